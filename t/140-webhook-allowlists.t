# acs_notify_topics and acs_notify_subscriptions: only the operator's own
# ACS resource and Event Grid subscriptions get past the edge.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use AcsTest::Util;

no_shuffle();
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('more_headers', <<'HDRS') unless defined $block->more_headers;
aeg-event-type: Notification
aeg-subscription-name: ACS-PUSH-WEBHOOK
Content-Type: application/json
HDRS
});

run_tests();

__DATA__

=== TEST 1: an event of the allowed topic is accepted, case-insensitively
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_topics /subscriptions/6B3D9A2E-4F1C-4B8E-9D7A-2C5E8F1A0B3C/resourcegroups/rg-push-prod/providers/Microsoft.Communication/communicationServices/ACS-PUSH-DEMO;
    }
--- request eval
"POST /eg\n" . fixture('eg-batch-mixed.json')
--- error_code: 200



=== TEST 2: an event of another topic is refused with 403
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_topics /subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/resourceGroups/rg-push-prod/providers/Microsoft.Communication/communicationServices/other;
        add_header X-Result $acs_notify_result always;
    }
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 403
--- response_headers
X-Result: rejected:topic
--- response_body eval
qq{{"error":{"code":"topic","message":"topic \\"$AcsTest::Util::TOPIC\\" not allowed"}}}
--- error_log eval
qq{acs_notify: rejected 403 topic: topic "$AcsTest::Util::TOPIC" not allowed, event "02272459-badb-4e2e-b538-4cb8a2f71da6"}



=== TEST 3: one foreign event refuses the whole batch
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_topics /subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/resourceGroups/rg-push-prod/providers/Microsoft.Communication/communicationServices/acs-push-demo;
    }
--- request eval
"POST /eg\n[" . eg_event(n => 1) . "," . eg_event(n => 2, topic => '"/subscriptions/evil"') . "]"
--- error_code: 403
--- error_log
acs_notify: rejected 403 topic: topic "/subscriptions/evil" not allowed, event "ev-2"



=== TEST 4: a trailing "*" allows every topic under a prefix
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_topics /subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/resourceGroups/rg-push-prod/*;
    }
--- request eval
["POST /eg\n" . fixture('eg-chat-message-received.json'),
 "POST /eg\n[" . eg_event(topic => '"/subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/resourceGroups/rg-other/x"') . "]"]
--- error_code eval
[200, 403]



=== TEST 5: several topics may be listed
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_topics /subscriptions/a/x /subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/resourceGroups/rg-push-prod/providers/Microsoft.Communication/communicationServices/acs-push-demo;
    }
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 200



=== TEST 6: the CloudEvents source is checked like the topic
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_topics /subscriptions/a/x;
    }
--- more_headers
aeg-event-type: Notification
Content-Type: application/cloudevents+json
--- request eval
"POST /eg\n" . fixture('ce-chat-message-received.json')
--- error_code: 403
--- error_log eval
qq{acs_notify: rejected 403 topic: topic "$AcsTest::Util::TOPIC" not allowed}



=== TEST 7: a validation for a parent scope of an allowed topic is accepted
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_topics /subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/resourceGroups/rg-push-prod/providers/Microsoft.Communication/communicationServices/acs-push-demo;
    }
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-validation.json')
--- error_code: 200
--- response_body chomp
{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}



=== TEST 8: a validation for a foreign scope is refused with 403
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_topics /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Communication/communicationServices/x;
    }
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-validation.json')
--- error_code: 403
--- error_log
acs_notify: rejected 403 topic: validation for topic "/subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c" not allowed



=== TEST 9: a scope that is only a string prefix, not a parent path, is refused
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_topics /subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/resourceGroups/rg-push-prod/providers/Microsoft.Communication/communicationServices/acs-push-demo;
    }
--- more_headers
aeg-event-type: SubscriptionValidation
Content-Type: application/json
--- request eval
"POST /eg\n[" . eg_event(eventType => '"Microsoft.EventGrid.SubscriptionValidationEvent"',
    topic => '"/subscriptions/6b3d9a2e"', data => '{"validationCode":"x"}') . "]"
--- error_code: 403



=== TEST 10: a listed subscription name is accepted, case-insensitively
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_subscriptions acs-push-webhook acs-push-webhook-ce;
    }
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 200



=== TEST 11: another subscription name is refused with 403
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_subscriptions acs-push-webhook-ce;
    }
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 403
--- error_log
acs_notify: rejected 403 subscription: subscription "ACS-PUSH-WEBHOOK" not allowed



=== TEST 12: a missing subscription name is refused with 403
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_subscriptions acs-push-webhook;
    }
--- more_headers
aeg-event-type: Notification
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 403
--- error_log
acs_notify: rejected 403 subscription: no aeg-subscription-name



=== TEST 13: the subscription list guards the validation handshake
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_subscriptions other-subscription;
    }
--- more_headers
aeg-event-type: SubscriptionValidation
aeg-subscription-name: ACS-PUSH-WEBHOOK
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-validation.json')
--- error_code: 403



=== TEST 14: a wrong secret is 401 even for a foreign subscription
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_secret $arg_code s3cret-value-1;
        acs_notify_subscriptions other-subscription;
    }
--- request eval
"POST /eg?code=nope-nope-nope\n" . fixture('eg-chat-message-received.json')
--- error_code: 401



=== TEST 15: the deletion of a subscription on an allowed resource is accepted
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_topics /subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/resourceGroups/rg-push-prod/providers/Microsoft.Communication/communicationServices/acs-push-demo;
    }
--- more_headers
aeg-event-type: SubscriptionDeletion
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-subscription-deleted.json')
--- error_code: 200



=== TEST 16: an empty topic pattern is a configuration error
--- config
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_topics "";
    }
--- must_die
--- error_log
acs_notify_topics: empty value
