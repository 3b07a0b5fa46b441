/* tests/unit/ops_flops.c: op_flops against counts made another way.
 *
 * 1. ResNet-18 at batch 1: the multiply-adds of its convolutions and its
 *    classifier, counted layer by layer from the architecture (the figure
 *    torchvision and the literature give as 1.81 GMACs):
 *      conv1 7x7, 3->64, 112x112 out          118,013,952
 *      layer1: 4 x 3x3 64->64 at 56x56        462,422,016
 *      layer2: 3x3 64->128 s2, 3 x 3x3 128->128, 1x1 64->128 s2 at 28x28
 *              57,802,752 + 346,816,512 + 6,422,528
 *      layer3, layer4: the same pattern (each 411,041,792)
 *      fc 512 -> 1000                             512,000
 *      total                                1,814,073,344 MACs
 *    op_flops counts a multiply-add as 2 FLOPs and the classifier's bias
 *    as 1000 more (ResNet's convolutions have no bias): 3,628,147,688.
 * 2. Small cases by hand: linear, matmul with a transpose, grouped conv.
 */
#include "mdlc.h"

static int failures;

static void expect(const char *what, int64_t got, int64_t want) {
  if (got != want) {
    printf("FAIL %s: op_flops %lld, want %lld\n", what, (long long)got,
           (long long)want);
    failures++;
  } else {
    printf("ok   %s: %lld\n", what, (long long)got);
  }
}

static int value(Graph *g, const char *name, int rank, const int64_t *dims) {
  Shape s = {.rank = rank};
  for (int i = 0; i < rank; i++) s.dim[i] = dims[i];
  return graph_add_value(g, name, VK_INPUT, DT_F32, &s, NOLOC);
}

int main(void) {
  Config cfg = graph_new()->cfg;
  Define batch1 = {"batch", 1};
  Graph *g = frontend_load("examples/resnet18.mdl", &batch1, 1, &cfg, 0);
  if (!g) return 1;
  int64_t sum = 0;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_CONV2D || g->nodes[i].op == OP_LINEAR)
      sum += op_flops(g, i);
  expect("resnet18 convolutions and classifier, batch 1", sum,
         2LL * 1814073344 + 1000);

  g = graph_new();
  /* linear: x [2, 3] -> 4 with bias: 2 * (2*4) * 3 + 8 = 56 */
  int x = value(g, "x", 2, (int64_t[]){2, 3});
  int w = value(g, "w", 2, (int64_t[]){4, 3});
  int b = value(g, "b", 1, (int64_t[]){4});
  int n = graph_add_node(g, OP_LINEAR, "lin", (int[]){x, w, b}, 3, NOLOC);
  g->nodes[n].a.linear.out = 4;
  g->nodes[n].a.linear.bias = true;
  graph_add_output(g, n, "y", DT_F32, &(Shape){2, {2, 4}}, false);
  expect("linear [2,3] -> 4 with bias", op_flops(g, n), 56);

  /* matmul, a transposed: a [5, 3, 2] (ta), b [5, 3, 4] -> [5, 2, 4];
   * k = 3: 2 * 40 * 3 = 240 */
  int a = value(g, "a", 3, (int64_t[]){5, 3, 2});
  int c = value(g, "c", 3, (int64_t[]){5, 3, 4});
  n = graph_add_node(g, OP_MATMUL, "mm", (int[]){a, c}, 2, NOLOC);
  g->nodes[n].a.matmul.ta = true;
  graph_add_output(g, n, "z", DT_F32, &(Shape){3, {5, 2, 4}}, false);
  expect("matmul [5,3,2]^T x [5,3,4]", op_flops(g, n), 240);

  /* conv2d: x [1, 4, 8, 8] -> 6 channels, 3x3, pad 1, groups 2, bias:
   * output 384 elements, each 2 * (4/2) * 9 FLOPs, plus the bias:
   * 13,824 + 384 = 14,208 */
  int im = value(g, "im", 4, (int64_t[]){1, 4, 8, 8});
  int k = value(g, "k", 4, (int64_t[]){6, 2, 3, 3});
  int kb = value(g, "kb", 1, (int64_t[]){6});
  n = graph_add_node(g, OP_CONV2D, "conv", (int[]){im, k, kb}, 3, NOLOC);
  g->nodes[n].a.conv.out = 6;
  g->nodes[n].a.conv.kernel = 3;
  g->nodes[n].a.conv.stride = 1;
  g->nodes[n].a.conv.pad = 1;
  g->nodes[n].a.conv.dilation = 1;
  g->nodes[n].a.conv.groups = 2;
  g->nodes[n].a.conv.bias = true;
  graph_add_output(g, n, "o", DT_F32, &(Shape){4, {1, 6, 8, 8}}, false);
  expect("conv2d grouped 3x3 with bias", op_flops(g, n), 14208);
  return failures ? 1 : 0;
}
