#!/bin/sh
# tests/sh/param_counts.sh: every example's parameter count, as mdlc reports
# it (`--peak --json`, the top-level "param_count"), against the published
# figure or one counted by hand below. The arithmetic is written out as
# shell arithmetic, and each total is checked against its literal too, so a
# slip in either is caught here rather than blamed on mdlc.
#
# Conventions: conv(o, i, k) = o*i*k*k weights (+ o bias); a norm has a
# weight and a bias per channel (batchnorm's running statistics are not
# parameters); linear(i, o) = o*i (+ o).
MDLC=${MDLC:-${BUILD:-build}/mdlc}
fails=0

# expect NAME TOTAL LITERAL: TOTAL (computed) must equal LITERAL (written
# down), and mdlc must report it for examples/NAME.mdl.
expect() {
  if [ "$2" -ne "$3" ]; then
    echo "$1: the arithmetic gives $2 but the figure written down is $3"
    fails=$((fails + 1))
    return
  fi
  json=$("$MDLC" --peak --json "examples/$1.mdl" 2>&1)
  rc=$?
  # The first "param_count" in the document: the top-level field.
  got=$(printf '%s\n' "$json" |
    grep -o '"param_count"[[:space:]]*:[[:space:]]*[0-9][0-9]*' |
    head -n 1 | sed 's/.*://; s/[[:space:]]//g')
  if [ "$rc" -ne 0 ] || [ -z "$got" ]; then
    echo "$1: mdlc --peak --json exited $rc, param_count '${got}':"
    printf '%s\n' "$json" | head -n 10
    fails=$((fails + 1))
  elif [ "$got" -ne "$3" ]; then
    echo "$1: mdlc counts $got parameters, expected $3 ($((got - $3)))"
    fails=$((fails + 1))
  else
    echo "$1: $got parameters"
  fi
}

# ---- tiny (memory.md): linear 3->4, linear 4->2 -------------------------
expect tiny $((4 * 3 + 4 + 2 * 4 + 2)) 26

# ---- mlp: linear 784->512, 512->256, 256->10 -----------------------------
expect mlp $((512 * 784 + 512 + 256 * 512 + 256 + 10 * 256 + 10)) 535818

# ---- resnet18: torchvision's figure, 11,689,512 ---------------------------
#   stem   conv 64x3x7x7, bn 64                                  =     9,536
#   basic(c)   = 2 conv cxcx3x3 + 2 bn c
#   down(i, c) = conv cxix3x3 + conv cxcx3x3 + conv cxix1x1 + 3 bn c
#   stage 1  2 basic(64)                       = 2 * 73,984    =   147,968
#   stage 2  down(64, 128)   230,144 + basic(128)   295,424    =   525,568
#   stage 3  down(128, 256)  919,040 + basic(256) 1,180,672    = 2,099,712
#   stage 4  down(256, 512) 3,673,088 + basic(512) 4,720,640   = 8,393,728
#   fc     linear 512->1000                                      =   513,000
basic() { echo $((2 * $1 * $1 * 9 + 2 * 2 * $1)); }
down() { echo $(($2 * $1 * 9 + $2 * $2 * 9 + $2 * $1 + 3 * 2 * $2)); }
stem=$((64 * 3 * 7 * 7 + 2 * 64))
stages=$((2 * $(basic 64) + $(down 64 128) + $(basic 128) \
  + $(down 128 256) + $(basic 256) + $(down 256 512) + $(basic 512)))
expect resnet18 $((stem + stages + 512 * 1000 + 1000)) 11689512

# ---- gpt2_small: GPT-2's 124,439,808 (head tied to wte); gpt2_naive adds
# an untied head ----------------------------------------------------------
#   wte 50257x768 = 38,597,376   wpe 1024x768 = 786,432
#   a layer: ln 1,536 + qkv 768x2304+2304 = 1,771,776
#          + proj 768x768+768 = 590,592 + ln 1,536
#          + fc 768x3072+3072 = 2,362,368 + proj 3072x768+768 = 2,360,064
#          = 7,087,872;  12 layers = 85,054,464
#   final ln 1,536: 124,439,808;  head 768x50257, no bias: 38,597,376
d=768
v=50257
layer=$((2 * d + 3 * d * d + 3 * d + d * d + d + 2 * d \
  + 4 * d * d + 4 * d + 4 * d * d + d))
gpt2=$((v * d + 1024 * d + 12 * layer + 2 * d))
if [ "$layer" -ne 7087872 ] || [ "$gpt2" -ne 124439808 ]; then
  echo "gpt2_small: a layer counts $layer (7087872), GPT-2 $gpt2 (124439808)"
  fails=$((fails + 1))
fi
expect gpt2_small "$gpt2" 124439808
expect gpt2_naive $((gpt2 + v * d)) 163037184

# ---- llama: per layer two rmsnorms, q and o d x d, k and v d x (d/heads *
# kv_heads), SwiGLU 3 x d x ffn, no biases; embedding and head untied.
# Llama-3-8B's published count is 8,030,261,248.
llama() { # d layers ffn
  kvd=$(($1 / 32 * 8))
  echo $(($2 * (2 * $1 + 2 * $1 * $1 + 2 * $1 * kvd + 3 * $1 * $3) \
    + 2 * 128256 * $1 + $1))
}
expect llama "$(llama 2048 12 8192)" 1255196672
n=$("$MDLC" --peak --json -D d=4096 -D layers=32 -D ffn=14336 \
  examples/llama.mdl | grep -o '"param_count"[[:space:]]*:[[:space:]]*[0-9]*' |
  head -n 1 | sed 's/.*://; s/[[:space:]]//g')
if [ "$n" != "$(llama 4096 32 14336)" ] || [ "$n" != 8030261248 ]; then
  echo "llama -D (Llama-3-8B): mdlc $n, formula $(llama 4096 32 14336), published 8030261248"
  fails=$((fails + 1))
fi

# ---- unet: c = 32, convs before a batchnorm have no bias -----------------
#   double(i, n) = conv nxix3x3 + bn n + conv nxnx3x3 + bn n
#   e1 double(3, 32) 10,208   e2 double(32, 64) 55,552
#   m  double(64, 128) 221,696
#   u2 conv 64x128x3x3 + 64 = 73,792   d2 double(128, 64) 110,848
#   u1 conv 32x64x3x3 + 32 = 18,464    d1 double(64, 32) 27,776
#   head conv 1x32x1x1 + 1 = 33                           total 518,369
double() { echo $(($2 * $1 * 9 + $2 * $2 * 9 + 2 * 2 * $2)); }
unet=$(($(double 3 32) + $(double 32 64) + $(double 64 128) \
  + 64 * 128 * 9 + 64 + $(double 128 64) \
  + 32 * 64 * 9 + 32 + $(double 64 32) + 1 * 32 + 1))
expect unet "$unet" 518369

# ---- operator_cnn: 3->64->64->64->3, 3x3 convs with bias ----------------
#   conv 64x3x3x3+64 = 1,792, instancenorm 128
#   2 x (conv 64x64x3x3+64 = 36,928, instancenorm 128)
#   conv 3x64x3x3+3 = 1,731                                 total 77,763
expect operator_cnn $((64 * 3 * 9 + 64 + 2 * 64 \
  + 2 * (64 * 64 * 9 + 64 + 2 * 64) + 3 * 64 * 9 + 3)) 77763

[ "$fails" -eq 0 ]
