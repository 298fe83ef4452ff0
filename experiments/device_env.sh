# Sourced by the scripts run on a lent GPU machine (benchmarks/gpu.sh, experiments/gpu_capacity.sh)
# from the repository root: unbuffered Python, the repository on PYTHONPATH, and the Python
# packages that machine lacks installed from .whl/ when present (see WORKSPACE.md).
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
