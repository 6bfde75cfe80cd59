#!/usr/bin/env bash
# Runs one bert_tf command on a Cloud TPU VM from a queued resource (spot by default), then
# deletes the TPU. Run it again after a preemption: it replaces the suspended queued resource,
# and the new VM runs the same command, which resumes from the latest checkpoint.
#
#   scripts/tpu_job.sh --name=korquad --zone=us-central2-b --job_dir=gs://BUCKET/jobs/korquad \
#     [--accelerator_type=v4-8] [--runtime_version=tpu-ubuntu2204-base] [--project=P] \
#     [--tf_stack=2.20|2.19] [--on_demand] -- python run_squad.py --use_tpu=True ... \
#     --output_dir=gs://BUCKET/korquad
#
# The VM's startup script (scripts/job_startup.sh) installs with `make install-tpu` (with
# --tf_stack=2.19: `make install-tpu-tf219`, tensorflow-tpu 2.19.1 and libtpu 0.0.10), sets
# TPU_NAME (`local`, or the slice's name with TPU_LOAD_LIBRARY=0 on a multi-host slice, where it
# also starts the TPU worker server on every host) and runs the command on worker 0. The runtime
# version is a plain Ubuntu image, as Cloud TPU's "TPU software versions" page lists for
# frameworks installed with pip: v2-alpha-tpuv5-lite for v5e, v2-alpha-tpuv5 for v5p,
# v2-alpha-tpuv6e for v6e.
set -euo pipefail
# shellcheck source=scripts/job_common.sh
source "$(dirname "$0")/job_common.sh"

ACCELERATOR_TYPE=v4-8
RUNTIME_VERSION=tpu-ubuntu2204-base
TF_STACK=2.20

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
}

extra_flag() {
  case "$1" in
    --accelerator_type=*) ACCELERATOR_TYPE="${1#*=}" ;;
    --runtime_version=*) RUNTIME_VERSION="${1#*=}" ;;
    --tf_stack=*) TF_STACK="${1#*=}" ;;
    *) return 1 ;;
  esac
}

parse_flags "$@"
check_flags
[[ "${TF_STACK}" =~ ^2\.(20|19)$ ]] || die "--tf_stack=${TF_STACK}: 2.20 (tensorflow-tpu 2.20.0, \
the default) or 2.19 (tensorflow-tpu 2.19.1 with libtpu 0.0.10; docs/installation-and-hardware.md)"
if ! printf '%s\n' "${COMMAND[@]}" | grep -Eq '^--(use_tpu(=[Tt]rue)?|distribution_strategy=tpu)$'
then
  die "the command does not ask for the TPU: add --use_tpu=True"
fi
if job_done; then
  echo "${JOB_DIR}/DONE exists: this job finished; use another --job_dir to run again."
  exit 0
fi

location_flags
if state="$(gcloud compute tpus queued-resources describe "${NAME}" "${LOCATION[@]}" \
    --format='value(state.state)' 2>/dev/null)"; then
  case "${state}" in
    ACCEPTED | WAITING_FOR_RESOURCES | PROVISIONING | CREATING | ACTIVE)
      die "queued resource ${NAME} is ${state}: the job is already queued or running" ;;
    *)
      echo "Queued resource ${NAME} is ${state}: deleting it to start the job again."
      gcloud compute tpus queued-resources delete "${NAME}" "${LOCATION[@]}" --force --quiet ;;
  esac
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
upload_code "${work}"
spot=()
if [[ "${SPOT}" == 1 ]]; then
  spot=(--spot)
fi
gcloud compute tpus queued-resources create "${NAME}" --node-id="${NAME}" "${LOCATION[@]}" \
  --accelerator-type="${ACCELERATOR_TYPE}" --runtime-version="${RUNTIME_VERSION}" "${spot[@]}" \
  --scopes=https://www.googleapis.com/auth/cloud-platform \
  --metadata="$(job_metadata tpu),bert-tf-stack=${TF_STACK}" --metadata-from-file="$(job_files "${work}")"
echo "Queued ${NAME}. Follow it with:"
echo "  gcloud compute tpus queued-resources describe ${NAME} --zone=${ZONE}"
echo "  gcloud storage ls ${JOB_DIR}/logs/"
