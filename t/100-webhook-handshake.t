# Event Grid handshakes: subscription validation (Event Grid schema),
# abuse protection (CloudEvents OPTIONS), subscription deletion, methods.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use AcsTest::Util;
use AcsTest::Entra;

my $keys = AcsTest::Entra::setup(($ENV{TEST_NGINX_SERVROOT} // 't/servroot')
                                 . '/entra-keys');
$ENV{TEST_NGINX_ENTRA} = $keys->{dir};

# a CloudEvents handshake as Event Grid sends it: these two headers only
our $handshake = "WebHook-Request-Origin: eventgrid.azure.net\n"
    . "WebHook-Request-Callback: https://rp-westeurope.eventgrid.azure.net:553/"
    . "eventsubscriptions/acs-push-webhook-ce/validate?id=3C8F&token=1A1A";

no_shuffle();
no_root_location();

# "--- then_refused: STATUS": the captured handshake is consented (200),
# and a delivery to the same location without credentials gets STATUS
add_block_preprocessor(sub {
    my $block = shift;
    my $status = $block->then_refused or return;
    $block->set_value('request', ["OPTIONS /eg",
        "POST /eg\n" . fixture('eg-chat-message-received.json')]);
    $block->set_value('more_headers',
        [$::handshake, "aeg-event-type: Notification\nContent-Type: application/json"]);
    $block->set_value('error_code', [200, $status]);
    $block->set_value('response_headers',
        ["WebHook-Allowed-Origin: eventgrid.azure.net", "WebHook-Allowed-Origin:"]);
});

run_tests();

__DATA__

=== TEST 1: validation handshake answers the validation code
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
aeg-event-type: SubscriptionValidation
aeg-subscription-name: ACS-PUSH-WEBHOOK
Content-Type: application/json; charset=utf-8
--- request eval
"POST /eg\n" . fixture('eg-validation.json')
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body chomp
{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
--- error_log
acs_notify: subscription validation for topic "/subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c" accepted
--- no_error_log
[error]



=== TEST 2: the aeg-event-type header is compared case-insensitively
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
aeg-event-type: subscriptionvalidation
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-validation.json')
--- response_body chomp
{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}



=== TEST 3: validation data given as a JSON string is accepted
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
"POST /eg\n" . eg_event(eventType => '"Microsoft.EventGrid.SubscriptionValidationEvent"',
    topic => '"/subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c"',
    data => '"{\"validationCode\":\"abc-123\",\"validationUrl\":\"https://x/validate\"}"')
    =~ s/^/[/r =~ s/$/]/r
--- response_body chomp
{"validationResponse":"abc-123"}



=== TEST 4: validation keys inside data match case-insensitively
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
"POST /eg\n[" . eg_event(eventType => '"Microsoft.EventGrid.SubscriptionValidationEvent"',
    data => '{"ValidationCode":"Pascal-Case-1","ValidationUrl":"https://x"}') . "]"
--- response_body chomp
{"validationResponse":"Pascal-Case-1"}



=== TEST 5: a validation code is JSON-escaped in the answer
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
"POST /eg\n[" . eg_event(eventType => '"Microsoft.EventGrid.SubscriptionValidationEvent"',
    data => '{"validationCode":"a\"b\\\\c\u0001"}') . "]"
--- response_body chomp
{"validationResponse":"a\"b\\c\u0001"}



=== TEST 6: a validation without validationCode is refused with 400
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
"POST /eg\n[" . eg_event(eventType => '"Microsoft.EventGrid.SubscriptionValidationEvent"',
    data => '{"validationUrl":"https://x"}') . "]"
--- error_code: 400
--- response_body chomp
{"error":{"code":"schema","message":"validation without data.validationCode"}}
--- error_log
acs_notify: rejected 400 schema: validation without data.validationCode, event "ev-1"



=== TEST 7: a validation header with another event type is refused with 400
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 400
--- error_log
acs_notify: rejected 400 schema: Microsoft.Communication.ChatMessageReceived in a subscription validation, event "02272459-badb-4e2e-b538-4cb8a2f71da6"



=== TEST 8: a validation mixed with other events is refused with 400
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
"POST /eg\n[" . eg_event(eventType => '"Microsoft.EventGrid.SubscriptionValidationEvent"',
    data => '{"validationCode":"x"}') . "," . eg_event(n => 2) . "]"
--- error_code: 400
--- error_log
acs_notify: rejected 400 schema: 2 events in a subscription validation



=== TEST 9: a validation event inside a notification is refused with 400
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
aeg-event-type: Notification
Content-Type: application/json
--- request eval
"POST /eg\n[" . eg_event(n => 1) . "," . eg_event(n => 2,
    eventType => '"Microsoft.EventGrid.SubscriptionValidationEvent"',
    data => '{"validationCode":"x"}') . "]"
--- error_code: 400
--- error_log
acs_notify: rejected 400 schema: Microsoft.EventGrid.SubscriptionValidationEvent in a notification, event "ev-2"



=== TEST 10: subscription deletion is answered 200 and logged at notice
--- config
    location = /eg {
        acs_notify_eventgrid;
        add_header X-Result $acs_notify_result always;
    }
--- more_headers
aeg-event-type: SubscriptionDeletion
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-subscription-deleted.json')
--- error_code: 200
--- response_headers
X-Result: deleted
--- error_log
[notice]
acs_notify: subscription deleted: "/subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/resourceGroups/rg-push-prod/providers/Microsoft.Communication/communicationServices/acs-push-demo/providers/Microsoft.EventGrid/eventSubscriptions/acs-push-webhook"



=== TEST 11: "Unsubscribe" is taken as a subscription deletion
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
aeg-event-type: Unsubscribe
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-subscription-deleted.json')
--- error_code: 200
--- error_log
acs_notify: subscription deleted



=== TEST 12: CloudEvents abuse protection handshake is consented in headers
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
WebHook-Request-Origin: eventgrid.azure.net
WebHook-Request-Callback: https://rp-westeurope.eventgrid.azure.net:553/eventsubscriptions/acs-push-webhook-ce/validate?id=3C8F&token=1A1A
WebHook-Request-Rate: 120
--- request
OPTIONS /eg
--- error_code: 200
--- response_headers
WebHook-Allowed-Origin: eventgrid.azure.net
WebHook-Allowed-Rate: *
Allow: POST, OPTIONS
--- error_log
acs_notify: abuse protection handshake from "eventgrid.azure.net" accepted



=== TEST 13: sovereign cloud origins are consented, origin case-insensitive
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
WebHook-Request-Origin: EventGrid.Azure.US
--- request
OPTIONS /eg
--- error_code: 200
--- response_headers
WebHook-Allowed-Origin: eventgrid.azure.us
WebHook-Allowed-Rate:



=== TEST 14: an abuse protection handshake from another origin is refused
--- config
    location = /eg { acs_notify_eventgrid; }
--- more_headers
WebHook-Request-Origin: evil.example.com
--- request
OPTIONS /eg
--- error_code: 403
--- response_headers
WebHook-Allowed-Origin:
--- error_log
acs_notify: rejected 403 origin: abuse protection handshake from unknown origin "evil.example.com"



=== TEST 15: a plain OPTIONS gets Allow and no consent
--- config
    location = /eg { acs_notify_eventgrid; }
--- request
OPTIONS /eg
--- error_code: 200
--- response_headers
Allow: POST, OPTIONS
WebHook-Allowed-Origin:



=== TEST 16: GET is refused with 405 and Allow
--- config
    location = /eg { acs_notify_eventgrid; }
--- request
GET /eg
--- error_code: 405
--- response_headers
Allow: POST, OPTIONS
--- response_body chomp
{"error":{"code":"method","message":"method GET not allowed"}}
--- error_log
acs_notify: rejected 405 method: method GET not allowed



=== TEST 17: PUT with a body is refused with 405, the body discarded
--- config
    location = /eg { acs_notify_eventgrid; }
--- request eval
["PUT /eg\n" . fixture('eg-validation.json'), "DELETE /eg"]
--- error_code eval
[405, 405]
--- error_log
acs_notify: rejected 405 method: method PUT not allowed
acs_notify: rejected 405 method: method DELETE not allowed



=== TEST 18: refusals are logged at acs_notify_log_level
--- config
    location = /eg { acs_notify_eventgrid; acs_notify_log_level warn; }
--- request
GET /eg
--- error_code: 405
--- error_log
[warn]
acs_notify: rejected 405 method



=== TEST 19: acs_notify_log_level is inherited from the server level
--- config
    acs_notify_log_level error;
    location = /eg { acs_notify_eventgrid; }
--- request
GET /eg
--- error_code: 405
--- error_log eval
qr/\[error\] .* acs_notify: rejected 405 method/



=== TEST 20: the captured handshake is consented where the subscription name is checked
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_subscriptions acs-push-webhook-ce;
    }
--- then_refused: 403
--- error_log
acs_notify: rejected 403 subscription: no aeg-subscription-name



=== TEST 21: the captured handshake is consented where an Entra token is required, without topics
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
    }
--- then_refused: 401
--- error_log
acs_notify: rejected 401 token: no bearer token



=== TEST 22: the captured handshake is consented where the secret is a delivery header
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $http_x_eventgrid_secret s3cret-value-1;
    }
--- then_refused: 401
--- error_log
acs_notify: rejected 401 secret: no secret



=== TEST 23: a secret in the URL's query string is checked on the handshake too
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret ${arg_code} s3cret-value-1;
        acs_notify_subscriptions acs-push-webhook-ce;
    }
--- request eval
["OPTIONS /eg?code=s3cret-value-1", "OPTIONS /eg", "OPTIONS /eg?code=wrong-value-000"]
--- more_headers eval
[$::handshake, $::handshake, $::handshake]
--- error_code eval
[200, 401, 401]
--- response_headers eval
["WebHook-Allowed-Origin: eventgrid.azure.net", "WebHook-Allowed-Origin:",
 "WebHook-Allowed-Origin:"]
--- grep_error_log eval
qr/rejected 401 secret: [a-z ]+/
--- grep_error_log_out
rejected 401 secret: no secret
rejected 401 secret: secret mismatch



=== TEST 24: the handshake's origin is still checked where nothing else is
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $http_x_eventgrid_secret s3cret-value-1;
        acs_notify_subscriptions acs-push-webhook-ce;
    }
--- request
OPTIONS /eg
--- more_headers
WebHook-Request-Origin: evil.example.com
--- error_code: 403
--- response_headers
WebHook-Allowed-Origin:
--- error_log
acs_notify: rejected 403 origin: abuse protection handshake from unknown origin "evil.example.com"
