# Shared by scripts/tpu_job.sh and scripts/gpu_job.sh (sourced, not run): flag parsing, the
# checks made before anything is created, and the upload of this checkout to the job directory.
# shellcheck shell=bash
# Its variables are read by the launchers that source it:
# shellcheck disable=SC2034

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "${SCRIPTS_DIR}")"

die() {
  echo "error: $*" >&2
  exit 2
}

# Flags common to both launchers; each launcher adds its own through extra_flag().
NAME="" ZONE="" PROJECT="" JOB_DIR="" SPOT=1
COMMAND=()

parse_flags() {  # parse_flags "$@": flags, then `--`, then the command to run on the VM
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --name=*) NAME="${1#*=}" ;;
      --zone=*) ZONE="${1#*=}" ;;
      --project=*) PROJECT="${1#*=}" ;;
      --job_dir=*) JOB_DIR="${1#*=}"; JOB_DIR="${JOB_DIR%/}" ;;
      --on_demand) SPOT=0 ;;
      --help | -h) usage; exit 0 ;;
      --) shift; COMMAND=("$@"); return ;;
      *) extra_flag "$1" || die "unknown flag $1 (see --help)" ;;
    esac
    shift
  done
}

check_flags() {  # the checks that need no cloud call, so a typo costs nothing
  [[ -n "${NAME}" ]] || die "--name is required (the TPU or VM name, e.g. --name=korquad-1)"
  [[ -n "${ZONE}" ]] || die "--zone is required (e.g. --zone=us-central2-b)"
  [[ "${JOB_DIR}" == gs://* ]] ||
    die "--job_dir=${JOB_DIR} must be a gs:// directory (code, logs and the DONE marker go there)"
  [[ ${#COMMAND[@]} -gt 0 ]] ||
    die "no command: put it after --, e.g. -- python run_squad.py ... --output_dir=gs://B/out"
  local word saw_output=0
  for word in "${COMMAND[@]}"; do
    if [[ "${word}" == --output_dir=* ]]; then
      saw_output=1
      [[ "${word#*=}" == gs://* ]] ||
        die "${word}: the VM is deleted when the run ends, so --output_dir must be gs://"
    fi
  done
  [[ "${saw_output}" == 1 ]] ||
    die "the command has no --output_dir=gs://...; its results would be lost"
}

LOCATION=()
location_flags() {  # sets LOCATION: --zone, and --project when one was given
  LOCATION=(--zone="${ZONE}")
  if [[ -n "${PROJECT}" ]]; then
    LOCATION+=(--project="${PROJECT}")
  fi
}

job_metadata() {  # job_metadata tpu|gpu: what job_startup.sh reads from the VM's metadata
  echo "bert-tf-job-dir=${JOB_DIR},bert-tf-accelerator=$1,bert-tf-name=${NAME}"
}

job_files() {  # job_files DIR: the startup script, and the command as one shell-quoted line
  printf '%q ' "${COMMAND[@]}" >"$1/command.sh"
  echo >>"$1/command.sh"
  echo "startup-script=${SCRIPTS_DIR}/job_startup.sh,bert-tf-command=$1/command.sh"
}

upload_code() {  # upload_code DIR: this checkout, without its venvs, .git and outputs, to the job
  local archive="$1/code.tar.gz"
  tar -czf "${archive}" -C "${REPO_DIR}" --exclude='./.venv*' --exclude=./.git \
    --exclude=./.hypothesis --exclude=./demo_output --exclude=./output --exclude='__pycache__' .
  gcloud storage cp "${archive}" "${JOB_DIR}/code.tar.gz"
}

job_done() {  # whether a previous run of this job directory finished
  gcloud storage ls "${JOB_DIR}/DONE" >/dev/null 2>&1
}
