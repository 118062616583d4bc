#!/usr/bin/env bash
# Issue 7's fusion experiment on Multi30k En->De test2016: single models, checkpoint averages, EMA exports,
# the ensemble, a linear merge and a distilled student, all decoded and scored the same way.
#
#   benchmarks/fusion_multi30k.sh prepare              # averages, EMA exports, merge (seconds)
#   benchmarks/fusion_multi30k.sh decode NAME CKPT...  # beam decode + sacreBLEU (cased and lowercased)
#                                                     # and fairseq-style moses-lc BLEU;
#                                                     # several CKPTs = ensemble; GENERATE_ARGS adds generate
#                                                     # options (e.g. "--engine ct2 --quantization int8")
#   SPLIT=val decodes val instead of test2016; BEAM (4) and LENPEN (1.0) set the search
#   benchmarks/fusion_multi30k.sh distill STEPS        # student: best single + STEPS of word-level KD from all
#   benchmarks/fusion_multi30k.sh control STEPS        # the same STEPS on the labels alone (the KD control)
#
# Run from the repository root. RUNS holds the trained members, one run directory each (MEMBERS names them);
# results go to $OUT/results.txt (one line per system: name, BLEU, decode seconds, sacreBLEU detail).
set -euo pipefail
RUNS=${RUNS:-runs}
OUT=${OUT:-runs/fusion-exp}
MEMBERS=${MEMBERS:-"m30k-t1 m30k-t2 m30k-c3"}
STUDENT_BASE=${STUDENT_BASE:-m30k-t1}
GENERATE_ARGS=${GENERATE_ARGS:-}
SPLIT=${SPLIT:-test}
BEAM=${BEAM:-4}
LENPEN=${LENPEN:-1.0}
DATA=../shared/data/multi30k
mkdir -p "$OUT/ckpt" "$OUT/hyp"
[ -f "$OUT/test.en" ] || zcat $DATA/test_2016_flickr.en.gz > "$OUT/test.en"
[ -f "$OUT/test.de" ] || zcat $DATA/test_2016_flickr.de.gz > "$OUT/test.de"
[ -f "$OUT/val.en" ] || zcat $DATA/val.en.gz > "$OUT/val.en"
[ -f "$OUT/val.de" ] || zcat $DATA/val.de.gz > "$OUT/val.de"
latest() { ls -d "$RUNS/$1"/checkpoints/step-* | sort | tail -1; }
finetune() {  # the options of a short fine-tune of the student base (distill and its control)
  echo "--set train.init_from=$(latest "$STUDENT_BASE") --set train.schedule=constant --set train.lr=3e-4
  --set train.warmup_steps=0 --set train.save_every=50 --set train.log_every=10 --set train.precision=bf16 --no-progress"
}

case $1 in
prepare)
  for m in $MEMBERS; do
    hybridformer average --last 5 "$RUNS/$m" --out "$OUT/ckpt/$m-avg5"
    hybridformer average --ema "$RUNS/$m" --out "$OUT/ckpt/$m-ema"
  done
  set -- $MEMBERS
  if [ $# -ge 2 ]; then
    hybridformer merge --method linear "$(latest "$1")" "$(latest "$2")" --out "$OUT/ckpt/merge-$1-$2"
  fi ;;
decode)
  name=$2; shift 2
  [ "$SPLIT" = test ] || name=$name.$SPLIT
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  hybridformer generate "$@" -i "$OUT/$SPLIT.en" --beam "$BEAM" --lenpen "$LENPEN" --batch-tokens 16000 \
    $GENERATE_ARGS > "$OUT/hyp/$name.de"
  secs=$(python -c "import time; print(round(time.time() - $start, 1))")
  sacrebleu "$OUT/$SPLIT.de" -i "$OUT/hyp/$name.de" -m bleu -w 2 > "$OUT/hyp/$name.bleu.json"
  sacrebleu "$OUT/$SPLIT.de" -i "$OUT/hyp/$name.de" -m bleu -w 2 -lc > "$OUT/hyp/$name.bleu-lc.json"
  python -c "import json; from hybridformer.metrics import bleu; r = json.load(open('$OUT/hyp/$name.bleu.json')); \
lc = json.load(open('$OUT/hyp/$name.bleu-lc.json')); read = lambda p: open(p).read().splitlines(); \
moses = bleu(read('$OUT/hyp/$name.de'), read('$OUT/$SPLIT.de'), tokenize='moses-lc', lang='de').score; \
print('$name', r['score'], 'lc', lc['score'], 'moses-lc', round(moses, 2), '${secs}s', r['verbose_score'], \
r['signature'])" | tee -a "$OUT/results.txt" ;;
distill)
  teachers=$(for m in $MEMBERS; do printf -- "--teacher %s " "$(latest "$m")"; done)
  # shellcheck disable=SC2086
  hybridformer distill $teachers --config configs/multi30k-small.yaml --out "$OUT/student" \
    --set data.tokenizer="$(latest "$STUDENT_BASE")/tokenizer.json" --set train.max_steps="$2" \
    --set train.eval_every="$2" $(finetune) ;;
control)
  # shellcheck disable=SC2086
  hybridformer train configs/multi30k-small.yaml --out "$OUT/control" \
    --set data.tokenizer="$(latest "$STUDENT_BASE")/tokenizer.json" --set train.max_steps="$2" \
    --set train.eval_every="$2" $(finetune) ;;
*) echo "usage: $0 prepare|decode NAME CKPT...|distill STEPS|control STEPS" >&2; exit 2 ;;
esac
