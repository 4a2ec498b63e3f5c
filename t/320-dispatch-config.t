# Configuration of hubs, dispatch and templates: every mistake is refused
# at start-up with a message that says what to change, never the key.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use AcsTest::Defaults;

no_shuffle();
no_root_location();

our $CS = 'Endpoint=sb://acs-test-ns.servicebus.windows.net/;'
        . 'SharedAccessKeyName=send-only;SharedAccessKey=c2VjcmV0LWtleS12YWx1ZS0wMTIz';

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('config', <<'CONF') unless defined $block->config;
    location = /eg { acs_notify_eventgrid; }
CONF
    $block->set_value('request', "GET /nothing") unless defined $block->request;
    $block->set_value('error_code', 404)
        unless defined $block->error_code || defined $block->must_die;
});

run_tests();

__DATA__

=== TEST 1: a literal connection string, quoted, and a hub: nginx starts
--- http_config
    acs_notify_registry registry;
    acs_notify_hub main "connection_string=Endpoint=sb://acs-test-ns.servicebus.windows.net/;SharedAccessKeyName=send-only;SharedAccessKey=c2VjcmV0LWtleS12YWx1ZS0wMTIz" hub=contoso-push;
--- no_error_log
[emerg]
[warn]



=== TEST 2: a connection string from a file and from the environment
--- main_config
    env ACS_TEST_CS;
--- init
$ENV{ACS_TEST_CS} = $main::CS;
Test::Nginx::Socket::write_file(Test::Nginx::Socket::html_dir() . '/nh.conn', "$main::CS\n");
--- http_config
    acs_notify_registry registry;
    acs_notify_hub a connection_string=file:../html/nh.conn hub=h1;
    acs_notify_hub b connection_string=env:ACS_TEST_CS hub=h2 api_version=2020-06 max_connections=4 timeout=3s;
--- config
    location = /eg { acs_notify_eventgrid hub=a voip_hub=b; }
--- no_error_log
[emerg]



=== TEST 3: a connection string without Endpoint is refused, the key never logged
--- http_config
    acs_notify_registry registry;
    acs_notify_hub main "connection_string=SharedAccessKeyName=send-only;SharedAccessKey=c2VjcmV0LWtleS12YWx1ZS0wMTIz" hub=h;
--- must_die
--- error_log
acs_notify_hub "main": invalid connection string: no Endpoint
--- no_error_log
c2VjcmV0



=== TEST 4: an Endpoint that is not sb:// is refused
--- http_config
    acs_notify_hub main "connection_string=Endpoint=https://acs-test-ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b" hub=h;
--- must_die
--- error_log
acs_notify_hub "main": invalid connection string: Endpoint does not start with sb://



=== TEST 5: a missing key name or key is refused
--- http_config
    acs_notify_hub main "connection_string=Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=b" hub=h;
--- must_die
--- error_log
acs_notify_hub "main": invalid connection string: SharedAccessKeyName missing or over 256 characters



=== TEST 6: a part without "=" is refused
--- http_config
    acs_notify_hub main "connection_string=Endpoint=sb://ns.servicebus.windows.net/;oops;SharedAccessKeyName=a;SharedAccessKey=b" hub=h;
--- must_die
--- error_log
acs_notify_hub "main": invalid connection string: a part has no "="



=== TEST 7: an Endpoint with a path is refused
--- http_config
    acs_notify_hub main "connection_string=Endpoint=sb://ns.servicebus.windows.net/x/;SharedAccessKeyName=a;SharedAccessKey=b" hub=h;
--- must_die
--- error_log
Endpoint is not sb://NAMESPACE.servicebus.windows.net/



=== TEST 8: a hub without hub= is refused
--- http_config
    acs_notify_hub main connection_string=env:PATH;
--- must_die
--- error_log
acs_notify_hub "main" needs connection_string= and hub=



=== TEST 9: a missing connection string file is refused
--- http_config
    acs_notify_hub main connection_string=file:/nonexistent/nh.conn hub=h;
--- must_die
--- error_log
open() "/nonexistent/nh.conn" failed



=== TEST 10: bad parameters are refused, each with its own message
--- http_config
    acs_notify_hub main "connection_string=Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b" hub=h connect_to=nohost;
--- must_die
--- error_log
acs_notify_hub "main": connect_to must be HOST:PORT



=== TEST 11: max_connections out of range is refused
--- http_config
    acs_notify_hub main "connection_string=Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b" hub=h max_connections=0;
--- must_die
--- error_log
acs_notify_hub "main": max_connections must be 1 to 8192



=== TEST 12: an unknown parameter is refused
--- http_config
    acs_notify_hub main "connection_string=Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b" hub=h region=west;
--- must_die
--- error_log
acs_notify_hub "main": invalid parameter "region=west"



=== TEST 13: a missing CA file is refused
--- http_config
    acs_notify_hub main "connection_string=Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b" hub=h ca_file=/nonexistent/ca.pem;
--- must_die
--- error_log
acs_notify_hub "main": ca_file "/nonexistent/ca.pem"



=== TEST 14: two hubs of one name are refused
--- http_config
    acs_notify_hub main "connection_string=Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b" hub=h;
    acs_notify_hub main "connection_string=Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b" hub=h2;
--- must_die
--- error_log
acs_notify_hub "main" is duplicate



=== TEST 15: an unknown hub= is refused
--- http_config
    acs_notify_registry registry;
    acs_notify_hub main "connection_string=Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b" hub=h;
--- config
    location = /eg { acs_notify_eventgrid hub=other; }
--- must_die
--- error_log
acs_notify_eventgrid: no acs_notify_hub "other"



=== TEST 16: several hubs without hub= are refused
--- http_config
    acs_notify_registry registry;
    acs_notify_hub a "connection_string=Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b" hub=h;
    acs_notify_hub b "connection_string=Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b" hub=h2;
--- must_die
--- error_log
acs_notify_eventgrid: several hubs are defined, choose one with hub=NAME



=== TEST 17: a hub without a registry is refused
--- http_config
    acs_notify_hub main "connection_string=Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b" hub=h;
--- must_die
--- error_log
acs_notify_eventgrid with a hub needs acs_notify_registry in the http block



=== TEST 18: a webhook without any hub starts with a warning
--- error_log
acs_notify_eventgrid without acs_notify_hub: events are checked and acknowledged, no push is sent



=== TEST 19: a dispatch timeout of Event Grid's 30s or more is refused
--- config
    location = /eg { acs_notify_eventgrid; acs_notify_dispatch_timeout 30s; }
--- must_die
--- error_log
acs_notify_dispatch_timeout must be from 1s and stay under Event Grid's 30s



=== TEST 20: acs_notify_ack takes dispatched or accepted
--- config
    location = /eg { acs_notify_eventgrid; acs_notify_ack later; }
--- must_die
--- error_log
invalid value "later"



=== TEST 21: bad dedup parameters are refused
--- http_config
    acs_notify_dedup size=1k;
--- must_die
--- error_log
acs_notify_dedup: invalid size "1k"



=== TEST 22: a template is checked at start-up: unterminated placeholder
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_template ChatMessageReceived apns '{"aps":{"alert":"${data.messageBody"}}';
    }
--- must_die
--- error_log
acs_notify_template ChatMessageReceived apns: unterminated "${" at byte



=== TEST 23: a template is checked at start-up: invalid JSON
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_template ChatMessageReceived fcmv1 '{"message":{"data":{"a":"${id}"}}';
    }
--- must_die
--- error_log
acs_notify_template ChatMessageReceived fcmv1: the payload is not valid JSON



=== TEST 24: a template is checked at start-up: APNs needs aps
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_template Microsoft.Communication.ChatMessageReceived apns '{"alert":"${data.messageBody}"}';
    }
--- must_die
--- error_log
an APNs payload needs an "aps" object



=== TEST 25: a template is checked at start-up: unknown platform
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_template ChatMessageReceived gcm '{"data":{}}';
    }
--- must_die
--- error_log
acs_notify_template: unknown platform "gcm", use apns, apns-voip, fcmv1, wns or browser



=== TEST 26: a template for an event that is never pushed is refused
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_template CallStarted apns '{"aps":{}}';
    }
--- must_die
--- error_log
acs_notify_template: event type "CallStarted" is never pushed



=== TEST 27: valid templates start
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_preview off;
        acs_notify_template ChatMessageReceived apns '{"aps":{"alert":{"title":"${data.senderDisplayName}","body":"${data.messageBody}"}},"thread":"${data.threadId}"}';
        acs_notify_template IncomingCall apns-voip '{"aps":{},"data":{"cp":"${cp}","caller":"${data.callerDisplayName}"}}';
        acs_notify_template ChatMessageReceived fcmv1 '{"message":{"data":{"text":"${data.messageBody}","id":"${id}"}}}';
    }
--- no_error_log
[emerg]



=== TEST 28: acs_notify_call_ttl and acs_notify_max_age take a time, 0 or off
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_call_ttl 45s;
        acs_notify_max_age 2h;
    }
    location = /eg-off {
        acs_notify_eventgrid;
        acs_notify_call_ttl off;
        acs_notify_max_age 0;
    }
--- no_error_log
[emerg]



=== TEST 29: a ring time under a second is refused
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_call_ttl 500ms;
    }
--- must_die
--- error_log
acs_notify_call_ttl must be off (0) or from 1s to 1h



=== TEST 30: a ring time over an hour is refused
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_call_ttl 2h;
    }
--- must_die
--- error_log
acs_notify_call_ttl must be off (0) or from 1s to 1h



=== TEST 31: acs_notify_max_age over 7 days is refused
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_max_age 8d;
    }
--- must_die
--- error_log
acs_notify_max_age must be off (0) or from 1s to 7d



=== TEST 32: acs_notify_call_ttl that is not a time is refused
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_call_ttl soon;
    }
--- must_die
--- error_log
acs_notify_call_ttl: "soon" is not a time (TIME or off)



=== TEST 33: acs_notify_trace with a zone starts
--- http_config
    acs_notify_trace zone=acs_trace:1m;
--- no_error_log
[emerg]



=== TEST 34: acs_notify_trace without zone= is refused
--- http_config
    acs_notify_trace acs_trace:1m;
--- must_die
--- error_log
acs_notify_trace takes zone=NAME:SIZE



=== TEST 35: acs_notify_trace without a size is refused
--- http_config
    acs_notify_trace zone=acs_trace;
--- must_die
--- error_log
acs_notify_trace: "acs_trace" is not NAME:SIZE



=== TEST 36: a trace zone too small is refused
--- http_config
    acs_notify_trace zone=acs_trace:8k;
--- must_die
--- error_log
acs_notify_trace: zone "acs_trace" needs a size of at least 64k, "8k" is not one



=== TEST 37: acs_notify_trace twice is refused
--- http_config
    acs_notify_trace zone=a:1m;
    acs_notify_trace zone=b:1m;
--- must_die
--- error_log
"acs_notify_trace" directive is duplicate



=== TEST 38: a trace zone may not take another zone's name
--- http_config
    limit_req_zone $binary_remote_addr zone=shared:1m rate=1r/s;
    acs_notify_trace zone=shared:1m;
--- must_die
--- error_log
the shared memory zone "shared" is already declared for a different use



=== TEST 39: the status location answers a trace query with 404 without a zone
--- config
    location = /status { acs_notify_status; }
--- request
GET /status?trace&user=8%3Aacs%3Abob
--- error_code: 404
--- response_body chomp
{"error":{"code":"no_trace","message":"there is no acs_notify_trace zone"}}
--- error_log
acs_notify: trace query refused 404 no_trace
