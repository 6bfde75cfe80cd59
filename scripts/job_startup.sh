#!/usr/bin/env bash
# Startup script of a bert_tf batch job VM (scripts/tpu_job.sh, scripts/gpu_job.sh set it).
#
# GCE runs it as root at every boot, on every worker of a TPU slice. It installs bert_tf with
# `make install-tpu` or `make install-gpu`, runs the job's command on worker 0 (the one client
# TensorFlow needs on a TPU slice; docs/installation-and-hardware.md), copies the log to the
# job directory, and deletes the TPU (or VM) when the command ends. A job directory that already
# has DONE is not run again. After a preemption, recreating the job (running the same launcher
# command again) boots a fresh VM that runs the same command, which resumes from the latest
# checkpoint in its gs:// --output_dir.
#
# Everything it needs is in the instance metadata the launcher wrote: bert-tf-job-dir,
# bert-tf-accelerator (tpu|gpu), bert-tf-name, bert-tf-command, and on a TPU bert-tf-stack (2.19:
# `make install-tpu-tf219` into .venv instead of `make install-tpu`).
set -euo pipefail

APP_DIR="${BERT_TF_APP_DIR:-/opt/bert_tf}"
METADATA="http://metadata.google.internal/computeMetadata/v1/instance"

metadata() {  # metadata PATH: one value of this VM's metadata ("" when absent)
  curl -sf -H "Metadata-Flavor: Google" "${METADATA}/$1" || true
}

log() {
  echo "bert_tf job: $*" >&2
}

JOB_DIR="$(metadata attributes/bert-tf-job-dir)"
ACCELERATOR="$(metadata attributes/bert-tf-accelerator)"
NAME="$(metadata attributes/bert-tf-name)"
STACK="$(metadata attributes/bert-tf-stack)"
ZONE="$(metadata zone)"
ZONE="${ZONE##*/}"
# TPU VMs number their workers; a GPU VM is worker 0 of one.
WORKER="$(metadata attributes/agent-worker-number)"
WORKER="${WORKER:-0}"
ENDPOINTS="$(metadata attributes/worker-network-endpoints)"
HOSTS=1
if [[ -n "${ENDPOINTS}" ]]; then
  HOSTS="$(tr ',' '\n' <<<"${ENDPOINTS}" | grep -c .)"
fi

if [[ -z "${JOB_DIR}" || -z "${NAME}" || ! "${ACCELERATOR}" =~ ^(tpu|gpu)$ ]]; then
  log "metadata bert-tf-job-dir, bert-tf-name or bert-tf-accelerator is missing; nothing to do"
  exit 1
fi

delete_self() {  # deletes this job's TPU (its queued resource) or VM; only worker 0 does it
  if [[ "${WORKER}" != 0 ]]; then
    return
  fi
  log "deleting ${NAME}"
  if [[ "${ACCELERATOR}" == tpu ]]; then
    gcloud compute tpus queued-resources delete "${NAME}" --zone="${ZONE}" --force --quiet \
      --async
  else
    gcloud compute instances delete "${NAME}" --zone="${ZONE}" --quiet
  fi
}

if gcloud storage ls "${JOB_DIR}/DONE" >/dev/null 2>&1; then
  log "${JOB_DIR}/DONE exists: the run finished before"
  delete_self
  exit 0
fi

log "step 1: code from ${JOB_DIR}/code.tar.gz into ${APP_DIR}"
mkdir -p "${APP_DIR}"
gcloud storage cp "${JOB_DIR}/code.tar.gz" "${APP_DIR}/code.tar.gz"
tar -xzf "${APP_DIR}/code.tar.gz" -C "${APP_DIR}"
cd "${APP_DIR}"

install=("install-${ACCELERATOR}")
if [[ "${ACCELERATOR}" == tpu && "${STACK}" == 2.19 ]]; then
  install=(install-tpu-tf219 TF219_VENV=.venv)  # the same .venv the steps below run
fi
log "step 2: make ${install[*]}"
if ! command -v make >/dev/null || ! python3 -c "import venv" 2>/dev/null; then
  apt-get update -q && apt-get install -y -q make python3-venv
fi
make "${install[@]}"

if [[ "${ACCELERATOR}" == tpu && "${HOSTS}" -gt 1 ]]; then
  # A slice: every worker serves its chips to the one client on worker 0 (tensorflow-tpu's
  # start_grpc_tpu_worker, a TensorFlow server on port 8470).
  log "step 3: TPU worker server on worker ${WORKER} of ${HOSTS}"
  setsid nohup .venv/bin/start_grpc_tpu_worker >grpc_tpu_worker.log 2>&1 </dev/null &
  export TPU_NAME="${NAME}" TPU_LOAD_LIBRARY=0
elif [[ "${ACCELERATOR}" == tpu ]]; then
  export TPU_NAME=local
fi
if [[ "${WORKER}" != 0 ]]; then
  exit 0
fi

log "step 4: the command, on worker 0"
metadata attributes/bert-tf-command >command.sh
status=0
PATH="${APP_DIR}/.venv/bin:${PATH}" bash command.sh 2>&1 | tee job.log || status="${PIPESTATUS[0]}"
log "the command exited with status ${status}"
gcloud storage cp job.log "${JOB_DIR}/logs/$(date -u +%Y%m%dT%H%M%SZ)-exit${status}.log"
if [[ "${status}" == 0 ]]; then
  date -u >DONE
  gcloud storage cp DONE "${JOB_DIR}/DONE"
fi
delete_self
