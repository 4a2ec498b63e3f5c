
/*
 * SAS tokens and connection strings (docs/dispatch.md, section 1): the
 * module's own code (ngx_acs_sas.c) against the test vector and the wrong
 * variants it must not produce.  Prints TAP.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_sas.h"


static int  tests, failed;


static void
is(const char *got, size_t len, const char *want, const char *name)
{
    int  ok;

    ok = (len == strlen(want) && memcmp(got, want, len) == 0);

    printf("%sok %d - %s\n", ok ? "" : "not ", ++tests, name);

    if (!ok) {
        printf("#   got:      %.*s\n#   expected: %s\n", (int) len, got, want);
        failed++;
    }
}


static void
ok(int cond, const char *name)
{
    printf("%sok %d - %s\n", cond ? "" : "not ", ++tests, name);
    failed += !cond;
}


#define S(x)  { sizeof(x) - 1, (u_char *) x }


int
main(void)
{
    u_char       buf[1024], *last;
    ngx_str_t    resource = S("https://MyNamespace.servicebus.windows.net/MyHub");
    ngx_str_t    key_name = S("DefaultFullSharedAccessSignature");
    ngx_str_t    key = S("c2FtcGxlLXNoYXJlZC1hY2Nlc3Mta2V5LW5vdC1yZWFsPQ==");
    ngx_str_t    cs, ep, kn, k;
    const char  *err;

    last = ngx_acs_sas(buf, &resource, &key_name, &key, 1700000000);

    ok((size_t) (last - buf) <= ngx_acs_sas_len(&resource, &key_name),
       "the header fits the length computed for it");

    is((char *) buf, last - buf,
       "SharedAccessSignature "
       "sr=https%3A%2F%2Fmynamespace.servicebus.windows.net%2Fmyhub"
       "&sig=NF2AU4UscCmT5z8RBPspBYudBA3qBpw4oR%2FGdrqfL7c%3D"
       "&se=1700000000&skn=DefaultFullSharedAccessSignature",
       "the test vector, byte for byte");

    ok(strstr((char *) buf, "m8V%2FKPCBNOTOgcCXN8wvckLn4XQRMwpWEVBE1jdAmz4")
       == NULL, "not the variant with the key base64-decoded");
    ok(strstr((char *) buf, "njqCGqn1l7w1n%2F%2Fe9V6xTXIs1qbV4qmsgmCehibo5iY")
       == NULL, "not the variant signing the unencoded URI");

    /* connection strings */

    cs = (ngx_str_t) S(" Endpoint=sb://acs-ns.servicebus.windows.net/ ;;"
                       "SharedAccessKeyName = send-only ; "
                       "SharedAccessKey=YWJjZA==;");
    ok(ngx_acs_connection_string(&cs, &ep, &kn, &k, &err) == NGX_OK,
       "a connection string with spaces and empty parts parses");
    is((char *) ep.data, ep.len, "sb://acs-ns.servicebus.windows.net/",
       "Endpoint");
    is((char *) kn.data, kn.len, "send-only", "SharedAccessKeyName trimmed");
    is((char *) k.data, k.len, "YWJjZA==",
       "SharedAccessKey keeps its base64 padding (split on the first =)");

    cs = (ngx_str_t) S("SharedAccessKeyName=a;SharedAccessKey=b");
    ok(ngx_acs_connection_string(&cs, &ep, &kn, &k, &err) == NGX_DECLINED
       && strcmp(err, "no Endpoint") == 0, "no Endpoint is refused");

    cs = (ngx_str_t) S("Endpoint=https://x/;SharedAccessKeyName=a;"
                       "SharedAccessKey=b");
    ok(ngx_acs_connection_string(&cs, &ep, &kn, &k, &err) == NGX_DECLINED
       && strstr(err, "sb://") != NULL, "an Endpoint that is not sb:// is refused");

    cs = (ngx_str_t) S("Endpoint=sb://x/;SharedAccessKey=b");
    ok(ngx_acs_connection_string(&cs, &ep, &kn, &k, &err) == NGX_DECLINED
       && strstr(err, "SharedAccessKeyName") != NULL,
       "a missing key name is refused");

    cs = (ngx_str_t) S("Endpoint=sb://x/;SharedAccessKeyName=a");
    ok(ngx_acs_connection_string(&cs, &ep, &kn, &k, &err) == NGX_DECLINED
       && strstr(err, "SharedAccessKey ") != NULL, "a missing key is refused");

    cs = (ngx_str_t) S("Endpoint=sb://x/;garbage;SharedAccessKeyName=a;"
                       "SharedAccessKey=b");
    ok(ngx_acs_connection_string(&cs, &ep, &kn, &k, &err) == NGX_DECLINED,
       "a part without = is refused");

    printf("1..%d\n", tests);

    return failed != 0;
}
