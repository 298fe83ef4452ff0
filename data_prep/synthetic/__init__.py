"""Procedural synthetic hands written in RHD's and STB's own on-disk layouts (issue 3).

Modules: ``hand`` (kinematic hand, joint limits, pose sampler), ``render`` (vectorised
capsule/slab renderer), ``background`` (textures, background plane), ``scene`` (one placed,
rendered hand), ``rhd_writer`` / ``stb_writer`` (the layouts), ``output`` (seeds, atomic
output folders, worker pool). Command line: ``python -m data_prep.synthetic --help``.
Uses ``handvae.ops`` only; ``handvae`` never imports this package.

Data conventions checked (moved from WORKSPACE.md)

Checked by the synthetic generator (`data_prep/synthetic`, issue 3) against the data sets'
READMEs as quoted in public loaders, and against those loaders (found with `search`; read, not
copied). Tests: `tests/data_prep/test_synthetic_writers.py`.

**RHD** (Zimmermann & Brox 2017; README and `view_samples.py`, quoted in many loaders, e.g.
lixiny/bihand `datasets/rhd.py`, Idein/chainer-hand-pose, hand3d forks):
- Files: `RHD_published_v2/{training,evaluation}/{color,mask,depth}/%05d.png` (`'%.5d.png' %
  sample_id`) and `anno_{training,evaluation}.pickle`: a dict int frame → `{'xyz', 'uv_vis',
  'K'}`. `xyz` [42, 3] metres (camera frame), `uv_vis` [42, 3] = (u, v, visible), a keypoint is
  visible where `uv_vis[:, 2] == 1`, `K` [3, 3] per frame. 320×320.
- Keypoints: 0 left wrist, 1–4 left thumb (tip to palm), 5–8 index, …, 17–20 little ("pinky");
  21 right wrist, 22–41 the same for the right hand (README "Keypoints available").
- Depth: `depth_two_uint8_to_float(R, G)` = (R·2⁸ + G) / (2¹⁶ − 1) · 5 metres; B unused.
  16-bit: 0.076 mm steps, range 0–5 m.
- Mask ids (README "Segmentation masks available"): 0 background, 1 person, 2–4 left thumb
  (tip to palm), 5–7 left index, …, 14–16 left pinky, 17 left palm, 18–33 the same for the right
  hand. hand3d picks the hand with more pixels of ids 2–17 vs ≥ 18 (the "dominant" hand).
- Synthetic choices (not RHD facts): one hand rendered per frame (left or right, 50/50) with
  phalanx ids tip→palm as above and the forearm as id 1; the other hand's 21 slots hold a
  plausible hand placed outside the image (`uv` outside 0–319, visible 0), so the rendered hand
  is always dominant. K: f ∈ [260, 310] px, principal point (160, 160); loaders must read K
  from the pickle as for real RHD. A keypoint is visible when it is inside the image and the
  rendered surface at its pixel is at most (radius of the solid there + 4 mm) in front of it.
  Background depth is a tilted plane at 1.2–4.5 m. Pickle protocol 2, float32 arrays.

**STB** (Zhang et al. 2017; readme.txt quoted in Idein/chainer-hand-pose
`src/pose/hand_dataset/stb_dataset.py`; lixiny/bihand `bihand/datasets/stb.py`):
- Files: `images/<Seq>/SK_color_<i>.png`, `images/<Seq>/SK_depth_<i>.png` (i from 0),
  `labels/<Seq>_SK.mat` with `handPara` [3, 21, N] (loaders transpose to [N, 21, 3]), mm.
  Split of the hand3d protocol: test B1Counting, B1Random; train B2–B6 Counting/Random.
  640×480. Left hands only (Idein sets `hand_side = "left"`; bihand flips to get right hands).
- Joint order of `handPara`: palm, then little, ring, middle, index, thumb, each MCP→tip
  (Idein `DEFAULT_KEYPOINT_NAMES`) = `handvae.ops.skeleton.STB_JOINT_NAMES`; `STB_TO_RHD`
  reorders it.
- Frames: the readme says the rotation vector [0.00531, −0.01196, 0.00301] (Rodrigues) and
  translation [−24.0381, −0.4563, −1.2326] mm "transform the coordinates relative to color
  camera to those relative to depth camera": `p_depth = R p_color + t`. The labels are in the
  depth camera's frame; bihand's `sk_xyz_depth2color` computes `(p − t) @ R`, and its
  quaternion-built `R` equals `handvae.ops.camera.rodrigues` of the vector to 1e-16 (checked
  numerically). `camera.stb_depth_to_color` / `stb_color_to_depth` implement exactly this.
- Intrinsics (readme, quoted by Idein): colour fx 607.92271, fy 607.88192, cx 314.78337,
  cy 236.42484; depth fx 475.62768, fy 474.77709, cx 336.41179, cy 238.77962 — equal to
  `STB_SK_COLOR_K` / `STB_SK_DEPTH_K` in `handvae/ops/camera.py`.
- Depth PNG: mm = R + 256·G (Idein `read_depth`: `depth[:,:,0] + 256 * depth[:,:,1]`; bihand:
  "stored as |mod|div|0| (RGB)"), 0 = no measurement. Not registered to colour: Idein overlays
  depth-frame joints projected with the depth intrinsics on `SK_depth` images, so the writer
  renders the depth image in the depth camera (`STB_SK_DEPTH_K`, depth-camera pose), and a
  builder must back-project with `STB_SK_DEPTH_K` and move points with `stb_depth_to_color`.
  (bihand reads a differently distributed `SK_depth_seg_<i>.png`; we write `SK_depth` only.)
- Palm → wrist: loaders disagree (bihand: `mid_mcp + 2.2 (palm − mid_mcp)`, or a mean over four
  MCPs with 2.25; `handvae.ops.skeleton` uses `ring_mcp + 2 (palm − ring_mcp)` after Ge et al.,
  not re-checked here). The writer stores `wrist_to_stb_palm` of its hand in slot 0 (the palm
  centre is halfway between wrist and ring MCP), so `stb_palm_to_wrist` recovers the synthetic
  wrist exactly; on real STB the wrist is an estimate.
- Synthetic choices: background plane 0.9–2.0 m, depth beyond 1.5 m written as 0 (no
  measurement), 1 mm Gaussian depth noise (none in `--plain` / dummy data); the `.mat` header's
  creation-time text is replaced by a fixed string so equal seeds give equal bytes.

**Dummy data** (`python -m data_prep.synthetic --dummy-data`, seed 0, plain backgrounds):
`data_prep/rhd/dummy_data/RHD_published_v2` (3 training, 2 evaluation frames) and
`data_prep/stb/dummy_data/{images,labels}` (B2Counting 2 frames, B1Counting 2 frames).
A test fails when the committed files differ from the generator's output.
"""
