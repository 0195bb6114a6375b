// C sources shared by the matching tests.

export const UTIL_C = `
#include <stdio.h>
int counter = 1;
static int hidden_total;
__thread int tls_hits;
static __thread int tls_local;

__attribute__((noinline)) static int helper(int x) { return x * 7 + hidden_total++; }
__attribute__((noinline)) static int finish(int x) { return x + counter; }

int step(int x) {
  if (x > 10)
    return finish(x - 3);
  return helper(x) + 1;
}

int report(int x) {
  tls_hits++;
  tls_local += x;
  fprintf(stderr, "report %d\\n", x);
  printf("total %d %s\\n", counter + tls_hits + tls_local, "units");
  return step(x) + helper(x);
}
`;

export const MAIN_C = `
int report(int);
int step(int);
int main(int argc, char **argv) { (void)argv; return report(argc) + step(argc); }
`;

export const LIB_C = `
#include <stdio.h>
int lib_counter;
static int lib_static;
__thread int lib_tls;
static __thread int lib_tls_static;

__attribute__((noinline)) static int lib_helper(int x) { return x * 5 + lib_static++; }
int lib_other(int x) { return x - lib_counter; }

int lib_api(int x) {
  lib_tls += x;
  lib_tls_static++;
  lib_counter += lib_helper(x);
  fprintf(stderr, "lib %d\\n", x);
  return lib_counter + lib_tls + lib_tls_static + lib_other(x);
}
`;
