/*
 * The libcurl floor of bench/dispatch.sh: what libcurl alone spends on one
 * push, without nginx, Event Grid or the module.
 *
 * It keeps CONNS transfers in flight against the sink for SECONDS, each one
 * a POST shaped like a push of the module (the same path, headers, body
 * size and the curl options ngx_acs_curl.c sets), reusing its easy handles
 * and connections, driven by curl_multi_poll() (the cheapest loop libcurl
 * offers).  It prints: transfers, CPU seconds (user + system, getrusage),
 * wall seconds, failures, all counted after a one-second warm-up.
 *
 *   curl-floor URL CONNECT_TO CA_FILE CONNS SECONDS BODY_BYTES
 */

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>


static const char  *url, *ca_file;
static char        *body;
static long         body_len;
static struct curl_slist  *headers, *connect_to;


static size_t
discard(char *p, size_t size, size_t n, void *data)
{
    return size * n;
}


static void
prepare(CURL *easy)
{
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, body_len);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 16384L);
    curl_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, discard);
    curl_easy_setopt(easy, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(easy, CURLOPT_CONNECT_TO, connect_to);
}


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static double
cpu(void)
{
    struct rusage  ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
           + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}


int
main(int argc, char **argv)
{
    int       i, conns, running, left, measuring;
    long      status, done, failed;
    CURL     *easy;
    CURLM    *multi;
    CURLMsg  *msg;
    double    seconds, start, end, t0, c0;

    if (argc != 7) {
        fprintf(stderr, "usage: curl-floor URL CONNECT_TO CA_FILE CONNS SECONDS"
                " BODY_BYTES\n");
        return 2;
    }

    url = argv[1];
    connect_to = curl_slist_append(NULL, argv[2]);
    ca_file = argv[3];
    conns = atoi(argv[4]);
    seconds = atof(argv[5]);
    body_len = atol(argv[6]);

    body = malloc(body_len + 1);
    if (body == NULL || conns < 1) {
        return 2;
    }

    memset(body, 'x', body_len);
    body[body_len] = '\0';

    /* the headers of an fcmv1 push, values of the same lengths */

    headers = curl_slist_append(NULL, "Content-Type: application/json;charset=utf-8");
    headers = curl_slist_append(headers, "ServiceBusNotification-Format: fcmv1");
    headers = curl_slist_append(headers, "ServiceBusNotification-DeviceHandle: "
                                "fcm-bench-device-handle-0000000000000000000000000");
    headers = curl_slist_append(headers, "x-ms-version: 2020-06");
    headers = curl_slist_append(headers, "Authorization: SharedAccessSignature "
        "sr=https%3A%2F%2Fbench-ns.servicebus.windows.net%2Fbench-hub&sig="
        "NF2AU4UscCmT5z8RBPspBYudBA3qBpw4oR%2FGdrqfL7c%3D&se=1700000000"
        "&skn=DefaultFullSharedAccessSignature");
    headers = curl_slist_append(headers, "Expect:");

    curl_global_init(CURL_GLOBAL_DEFAULT);

    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);

    for (i = 0; i < conns; i++) {
        easy = curl_easy_init();
        prepare(easy);
        curl_multi_add_handle(multi, easy);
    }

    start = now();
    end = start + 1 + seconds;
    measuring = 0;
    done = 0;
    failed = 0;
    t0 = start;
    c0 = 0;

    for ( ;; ) {
        curl_multi_perform(multi, &running);

        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }

            easy = msg->easy_handle;
            status = 0;
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);

            if (measuring) {
                done++;
                failed += (msg->data.result != CURLE_OK || status != 201);
            }

            curl_multi_remove_handle(multi, easy);
            curl_easy_reset(easy);
            prepare(easy);
            curl_multi_add_handle(multi, easy);
        }

        if (!measuring && now() >= start + 1) {
            measuring = 1;
            t0 = now();
            c0 = cpu();
        }

        if (now() >= end) {
            break;
        }

        curl_multi_poll(multi, NULL, 0, 100, NULL);
    }

    printf("%ld\t%.3f\t%.3f\t%ld\n", done, cpu() - c0, now() - t0, failed);

    return 0;
}
