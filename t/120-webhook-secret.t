# acs_notify_secret: a shared secret in the query string or a header,
# compared in constant time, with rotation, from a literal, file or env.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use AcsTest::Util;

$ENV{TEST_NGINX_EG_SECRET} = 'from-the-environment-0123';

no_shuffle();
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('more_headers', <<'HDRS') unless defined $block->more_headers;
aeg-event-type: Notification
Content-Type: application/json
HDRS

    $block->set_value('request', "POST /eg?code=s3cret-value-1\n"
        . fixture('eg-chat-message-received.json'))
        unless defined $block->request || defined $block->raw_request;
});

run_tests();

__DATA__

=== TEST 1: the right secret in the query string is accepted
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code s3cret-value-1;
    }
--- error_code: 200
--- no_error_log
acs_notify: rejected



=== TEST 2: a wrong secret is refused with 401, no detail for the sender
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code s3cret-value-1;
        add_header X-Result $acs_notify_result always;
    }
--- request eval
"POST /eg?code=s3cret-value-2\n" . fixture('eg-chat-message-received.json')
--- error_code: 401
--- response_headers
X-Result: rejected:secret
WWW-Authenticate:
--- response_body chomp
{"error":{"code":"secret","message":"missing or invalid credential"}}
--- error_log
acs_notify: rejected 401 secret: secret mismatch
--- no_error_log eval
qr/acs_notify: [^,]*s3cret/



=== TEST 3: a missing secret is refused with 401
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code s3cret-value-1;
    }
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 401
--- error_log
acs_notify: rejected 401 secret: no secret



=== TEST 4: a prefix of the secret is refused
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code s3cret-value-1;
    }
--- request eval
"POST /eg?code=s3cret-value-\n" . fixture('eg-chat-message-received.json')
--- error_code: 401



=== TEST 5: the secret guards the validation handshake too
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code s3cret-value-1;
    }
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
["POST /eg?code=wrong-value-000\n" . fixture('eg-validation.json'),
 "POST /eg?code=s3cret-value-1\n" . fixture('eg-validation.json')]
--- error_code eval
[401, 200]
--- response_body eval
['{"error":{"code":"secret","message":"missing or invalid credential"}}',
 '{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}']



=== TEST 6: the secret guards the OPTIONS handshake too
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code s3cret-value-1;
    }
--- more_headers
WebHook-Request-Origin: eventgrid.azure.net
--- request eval
["OPTIONS /eg?code=nope-nope-nope", "OPTIONS /eg?code=s3cret-value-1"]
--- error_code eval
[401, 200]
--- response_headers eval
["WebHook-Allowed-Origin:", "WebHook-Allowed-Origin: eventgrid.azure.net"]



=== TEST 7: two secrets: both accepted during a rotation
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code old-secret-aaaa new-secret-bbbb;
    }
--- request eval
["POST /eg?code=old-secret-aaaa\n" . fixture('eg-chat-message-received.json'),
 "POST /eg?code=new-secret-bbbb\n" . fixture('eg-chat-message-received.json'),
 "POST /eg?code=other-secret-cc\n" . fixture('eg-chat-message-received.json')]
--- error_code eval
[200, 200, 401]



=== TEST 8: a secret in a custom delivery header
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $http_x_eventgrid_secret header-secret-1;
    }
--- more_headers eval
["aeg-event-type: Notification\nContent-Type: application/json\nX-EventGrid-Secret: header-secret-1",
 "aeg-event-type: Notification\nContent-Type: application/json\nX-EventGrid-Secret: header-secret-2"]
--- request eval
["POST /eg\n" . fixture('eg-chat-message-received.json'),
 "POST /eg\n" . fixture('eg-chat-message-received.json')]
--- error_code eval
[200, 401]



=== TEST 9: a secret read from a file relative to the conf dir, newline stripped
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code file:../html/eg-secret;
    }
--- user_files
>>> eg-secret
s3cret-value-1
--- error_code: 200



=== TEST 10: a secret read from the environment
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code env:TEST_NGINX_EG_SECRET;
    }
--- request eval
"POST /eg?code=from-the-environment-0123\n" . fixture('eg-chat-message-received.json')
--- error_code: 200



=== TEST 11: the secret applies before Content-Type and event type checks
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code s3cret-value-1;
    }
--- more_headers
Content-Type: text/plain
--- request
POST /eg?code=x
hello
--- error_code: 401



=== TEST 12: the secret is inherited by nested locations
--- config
    acs_notify_secret $arg_code s3cret-value-1;
    location /hooks/ {
        location = /hooks/eg { acs_notify_eventgrid; }
    }
--- request eval
["POST /hooks/eg?code=s3cret-value-1\n" . fixture('eg-chat-message-received.json'),
 "POST /hooks/eg?code=bad-bad-bad-bad\n" . fixture('eg-chat-message-received.json')]
--- error_code eval
[200, 401]



=== TEST 13: a short secret is a configuration error
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code short;
    }
--- must_die
--- error_log
acs_notify_secret: secret 1 is shorter than 8 characters



=== TEST 14: a missing secret file is a configuration error
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code file:/nonexistent/eg-secret;
    }
--- must_die
--- error_log
open() "/nonexistent/eg-secret" failed



=== TEST 15: an unset environment variable is a configuration error
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code env:ACS_NOTIFY_SURELY_UNSET;
    }
--- must_die
--- error_log
environment variable "ACS_NOTIFY_SURELY_UNSET" is not set



=== TEST 16: a secret without a value to compare is a configuration error
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code;
    }
--- must_die
--- error_log
invalid number of arguments in "acs_notify_secret" directive
