
/*
 * The driver shared by the fuzz targets: a libFuzzer entry point with
 * -DNGX_ACS_FUZZ, else a program replaying the files named on its command
 * line.  Each target defines ngx_acs_fuzz_input(); replay says whether the
 * input comes from a file (a target may then try it several ways).
 */


#include <ngx_config.h>
#include <ngx_core.h>


void ngx_acs_fuzz_input(const u_char *data, size_t size, ngx_uint_t replay);


#ifdef NGX_ACS_FUZZ

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_acs_fuzz_input(data, size, 0);
    return 0;
}

#else

int
main(int argc, char **argv)
{
    int      i;
    long     n;
    FILE    *f;
    u_char  *buf;

    for (i = 1; i < argc; i++) {
        f = fopen(argv[i], "rb");
        if (f == NULL) {
            perror(argv[i]);
            return 2;
        }

        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);

        buf = malloc(n + 1);
        if (buf == NULL || fread(buf, 1, n, f) != (size_t) n) {
            return 2;
        }

        fclose(f);
        ngx_acs_fuzz_input(buf, n, 1);
        free(buf);
    }

    printf("replayed %d inputs\n", argc - 1);

    return 0;
}

#endif
