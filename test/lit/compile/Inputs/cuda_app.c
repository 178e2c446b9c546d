/* An application of a CUDA library from `tessera compile --target cuda:…`: C, the header and the library only.
 * Linked in the lit test (not run: CI has no GPU). */
#include <stdio.h>

#include "tessera_causal.h"

int main(void) {
  size_t workspace = tessera_causal_workspace_bytes(2);
  int status = tessera_causal(NULL, NULL, NULL, NULL, 0, NULL, NULL, 0);
  printf("%zu %d\n", workspace, status);
  return status;
}
