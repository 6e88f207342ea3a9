/* dlopen(RTLD_NOW) + dlclose of one PAM module, 1000 times, in a plain C process (no
 * libgcc_s loaded, as in sshd and sudo); prints the median. See BENCHMARKS.md:
 * cc -O2 -o /tmp/dlopen benches/dlopen.c -ldl -lpam && /tmp/dlopen MODULE.so */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
    double t[1000];
    for (int i = 0; i < 1000; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        void *h = dlopen(argv[1], RTLD_NOW);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        dlclose(h);
        clock_gettime(CLOCK_MONOTONIC, &b);
        t[i] = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
    }
    qsort(t, 1000, sizeof t[0], cmp);
    printf("%-60s p50 %6.1f us\n", argv[1], t[500]);
    return 0;
}
