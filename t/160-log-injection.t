# Strings a sender chooses (topics, event ids and types, header values)
# reach the error log escaped and cut: no sender can start a log line of its
# own, or hide where a quoted value ends.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use AcsTest::Util;
use AcsTest::Entra;

my $keys = AcsTest::Entra::setup(($ENV{TEST_NGINX_SERVROOT} // 't/servroot')
                                 . '/entra-keys');
$ENV{TEST_NGINX_ENTRA} = $keys->{dir};

# the validation event of the audit: its topic starts a forged [alert] line
our $forged = fixture('eg-validation.json')
    =~ s{"topic": "[^"]*"}{"topic": "\\n2026/12/05 12:00:00 [alert] 1#1: FORGED LINE"}r;

no_shuffle();
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('config', <<'CONF') unless defined $block->config;
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_topics /subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/*;
    }
CONF
});

run_tests();

__DATA__

=== TEST 1: a validation topic holding a forged log line, no credentials, Entra and topics: 400, no forged line
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
        acs_notify_topics /subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/*;
    }
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
"POST /eg\n" . $::forged
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: field "topic" of event 1 holds a control character
--- no_error_log eval
[qr/^2026\/12\/05 12:00:00/m, 'FORGED LINE', '[alert]']



=== TEST 2: a foreign topic is logged escaped: quotes and bytes outside printable ASCII
--- more_headers
aeg-event-type: Notification
Content-Type: application/json
--- request eval
"POST /eg\n[" . eg_event(topic => qq{"/x\\" accepted \\"\xc3\xa9\\\\"}) . "]"
--- error_code: 403
--- error_log
acs_notify: rejected 403 topic: topic "/x\" accepted \"\xc3\xa9\\" not allowed, event "ev-1"



=== TEST 3: an event id is logged escaped
--- more_headers
aeg-event-type: Notification
Content-Type: application/json
--- request eval
"POST /eg\n[" . eg_event(id => '"id\\"\u00e9"', topic => '"/elsewhere"') . "]"
--- error_code: 403
--- error_log
acs_notify: rejected 403 topic: topic "/elsewhere" not allowed, event "id\"\xc3\xa9"



=== TEST 4: header values are logged escaped
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_subscriptions acs-push-webhook;
    }
    location = /eg-open { acs_notify_eventgrid; }
--- more_headers eval
["aeg-subscription-name: a\"b\x1b[31mc\naeg-event-type: Notification\nContent-Type: application/json",
 "aeg-event-type: Notif\"ication\x7f\nContent-Type: application/json",
 "aeg-event-type: Notification\nContent-Type: text/\x1bplain"]
--- request eval
["POST /eg\n[]", "POST /eg-open\n[]", "POST /eg-open\n[]"]
--- error_code eval
[403, 400, 415]
--- error_log eval
['acs_notify: rejected 403 subscription: subscription "a\"b\x1b[31mc" not allowed',
 'acs_notify: rejected 400 aeg_event_type: unknown aeg-event-type "Notif\"ication\x7f"',
 'acs_notify: rejected 415 content_type: unsupported content type "text/\x1bplain"']



=== TEST 5: an origin is logged escaped
--- request
OPTIONS /eg
--- more_headers eval
"WebHook-Request-Origin: evil\"\x1b.example"
--- error_code: 403
--- error_log
acs_notify: rejected 403 origin: abuse protection handshake from unknown origin "evil\"\x1b.example"



=== TEST 6: a long value is cut at 256 bytes
--- more_headers
aeg-event-type: Notification
Content-Type: application/json
--- request eval
"POST /eg\n[" . eg_event(topic => '"/' . ('t' x 1000) . '"') . "]"
--- error_code: 403
--- error_log eval
qr/topic "\/t{255}\.\.\." not allowed/
