#!/usr/bin/env bash
# Runs one bert_tf command on a GPU VM (spot by default), then deletes the VM. Run it again after
# a preemption (spot VMs are deleted when preempted): the new VM runs the same command, which
# resumes from the latest checkpoint.
#
#   scripts/gpu_job.sh --name=korquad-gpu --zone=us-central1-a --job_dir=gs://BUCKET/jobs/korquad \
#     [--machine_type=g2-standard-8] [--accelerator=type=nvidia-tesla-t4,count=1] \
#     [--image_family=common-cu128-ubuntu-2204-nvidia-570] [--project=P] [--on_demand] \
#     -- python run_squad.py ... --output_dir=gs://BUCKET/korquad
#
# g2 machine types come with their L4 GPUs; others (n1) need --accelerator. The image is a Deep
# Learning VM image (project deeplearning-platform-release, whose NVIDIA driver the
# install-nvidia-driver metadata key installs); list the current families with
# `gcloud compute images list --project=deeplearning-platform-release`. The VM's startup script
# (scripts/job_startup.sh) installs with `make install-gpu` and runs the command.
set -euo pipefail
# shellcheck source=scripts/job_common.sh
source "$(dirname "$0")/job_common.sh"

MACHINE_TYPE=g2-standard-8
GPU_ACCELERATOR=""
IMAGE_FAMILY=common-cu128-ubuntu-2204-nvidia-570

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

extra_flag() {
  case "$1" in
    --machine_type=*) MACHINE_TYPE="${1#*=}" ;;
    --accelerator=*) GPU_ACCELERATOR="${1#*=}" ;;
    --image_family=*) IMAGE_FAMILY="${1#*=}" ;;
    *) return 1 ;;
  esac
}

parse_flags "$@"
check_flags
if job_done; then
  echo "${JOB_DIR}/DONE exists: this job finished; use another --job_dir to run again."
  exit 0
fi

location_flags
if status="$(gcloud compute instances describe "${NAME}" "${LOCATION[@]}" \
    --format='value(status)' 2>/dev/null)"; then
  case "${status}" in
    PROVISIONING | STAGING | RUNNING)
      die "VM ${NAME} is ${status}: the job is already running" ;;
    *)
      echo "VM ${NAME} is ${status}: deleting it to start the job again."
      gcloud compute instances delete "${NAME}" "${LOCATION[@]}" --quiet ;;
  esac
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
upload_code "${work}"
extra=()
if [[ "${SPOT}" == 1 ]]; then
  extra+=(--provisioning-model=SPOT --instance-termination-action=DELETE)
fi
if [[ -n "${GPU_ACCELERATOR}" ]]; then
  extra+=(--accelerator="${GPU_ACCELERATOR}")
fi
gcloud compute instances create "${NAME}" "${LOCATION[@]}" --machine-type="${MACHINE_TYPE}" \
  --maintenance-policy=TERMINATE --image-project=deeplearning-platform-release \
  --image-family="${IMAGE_FAMILY}" --boot-disk-size=200GB "${extra[@]}" \
  --scopes=https://www.googleapis.com/auth/cloud-platform \
  --metadata="install-nvidia-driver=True,$(job_metadata gpu)" \
  --metadata-from-file="$(job_files "${work}")"
echo "Started ${NAME}. Follow it with:"
echo "  gcloud compute instances describe ${NAME} --zone=${ZONE} --format='value(status)'"
echo "  gcloud storage ls ${JOB_DIR}/logs/"
