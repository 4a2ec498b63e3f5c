# Notifications: Event Grid and CloudEvents bodies, the sample fixtures,
# content types, limits and every malformed shape a sender could try.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use AcsTest::Util;

no_shuffle();
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('config', <<'CONF') unless defined $block->config;
    location = /eg {
        acs_notify_eventgrid;
        add_header X-Events $acs_notify_events always;
        add_header X-Result $acs_notify_result always;
        add_header X-Event-Id $acs_notify_event_id always;
    }
CONF

    $block->set_value('more_headers', <<'HDRS') unless defined $block->more_headers;
aeg-event-type: Notification
aeg-subscription-name: ACS-PUSH-WEBHOOK
aeg-delivery-count: 0
aeg-metadata-version: 1
Content-Type: application/json; charset=utf-8
HDRS
});

run_tests();

__DATA__

=== TEST 1: a user-level chat message is accepted
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 200
--- response_headers
X-Events: 1
X-Result: checked
X-Event-Id: 02272459-badb-4e2e-b538-4cb8a2f71da6
--- response_body
--- no_error_log
[error]
acs_notify: rejected



=== TEST 2: every sample notification is accepted
--- request eval
[map { "POST /eg\n" . fixture($_) } qw(
    eg-chat-message-received-in-thread.json
    eg-chat-participant-added-to-thread-with-user.json
    eg-chat-thread-participant-added.json
    eg-incoming-call.json eg-call-started.json eg-call-ended.json
    eg-sms-received.json)]
--- error_code eval
[(200) x 7]
--- response_headers eval
[("X-Events: 1\nX-Result: checked") x 7]
--- no_error_log
acs_notify: rejected



=== TEST 3: a mixed batch of six events is accepted whole
--- request eval
"POST /eg\n" . fixture('eg-batch-mixed.json')
--- error_code: 200
--- response_headers
X-Events: 6
--- error_log eval
qr/acs_notify: event "[^"]+" type "Microsoft.Communication.IncomingCall"/



=== TEST 4: a structured CloudEvents object is accepted
--- more_headers
aeg-event-type: Notification
Content-Type: application/cloudevents+json; charset=utf-8
--- request eval
"POST /eg\n" . fixture('ce-chat-message-received.json')
--- error_code: 200
--- response_headers
X-Events: 1
X-Event-Id: 02272459-badb-4e2e-b538-4cb8a2f71da6



=== TEST 5: a CloudEvents batch array is accepted
--- more_headers
aeg-event-type: Notification
Content-Type: application/cloudevents-batch+json
--- request eval
"POST /eg\n[" . join(',', map { ce_event(n => $_) } 1 .. 3) . "]"
--- error_code: 200
--- response_headers
X-Events: 3
X-Event-Id: ce-1



=== TEST 6: CloudEvents with data_base64 and extension attributes
--- more_headers
aeg-event-type: Notification
Content-Type: application/cloudevents+json
--- request eval
"POST /eg\n" . ce_event(data => undef, data_base64 => '"aGk="',
    traceparent => '"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"',
    ext => '{"nested":[1,2,{"a":null}]}')
--- error_code: 200
--- response_headers
X-Events: 1



=== TEST 7: a body nginx buffered to a temporary file is parsed too
--- config
    location = /eg {
        acs_notify_eventgrid;
        client_body_buffer_size 1k;
        add_header X-Events $acs_notify_events always;
    }
--- request eval
"POST /eg\n" . fixture('eg-batch-mixed.json')
--- error_code: 200
--- response_headers
X-Events: 6
--- error_log
a client request body is buffered to a temporary file



=== TEST 8: a chunked body is parsed
--- raw_request eval
my $b = fixture('eg-batch-mixed.json');
"POST /eg HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
. "aeg-event-type: Notification\r\nContent-Type: application/json\r\n"
. "Transfer-Encoding: chunked\r\n\r\n"
. join('', map { sprintf("%x\r\n%s\r\n", length $_, $_) } unpack('(a1000)*', $b))
. "0\r\n\r\n"
--- error_code: 200
--- response_headers
X-Events: 6



=== TEST 9: the empty array is refused with 400
--- request
POST /eg
[]
--- error_code: 400
--- response_body chomp
{"error":{"code":"json","message":"no events in the body"}}
--- error_log
acs_notify: rejected 400 json: no events in the body



=== TEST 10: an empty body is refused with 400
--- request
POST /eg
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: empty body



=== TEST 11: malformed JSON is refused with 400
--- request
POST /eg
[{"id":"1",]
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: invalid JSON
--- response_headers
X-Result: rejected:json



=== TEST 12: truncated JSON is refused with 400
--- request eval
"POST /eg\n" . substr(fixture('eg-chat-message-received.json'), 0, 500)
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: invalid JSON: parse error: premature EOF



=== TEST 13: trailing garbage after the array is refused with 400
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json') . "[]"
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: invalid JSON



=== TEST 14: a scalar body is refused with 400
--- request
POST /eg
"hello"
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: body is not a JSON array or object



=== TEST 15: an array element that is not an object is refused with 400
--- request eval
"POST /eg\n[" . eg_event() . ",42]"
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: event 2 is not a JSON object



=== TEST 16: an array of arrays is refused with 400
--- request
POST /eg
[[]]
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: event 1 is not a JSON object



=== TEST 17: an Event Grid event object outside an array is refused
--- request eval
"POST /eg\n" . eg_event()
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: a single event object must be a CloudEvent, and it has no "specversion" (Event Grid events come in an array)



=== TEST 18: each required Event Grid field is required
--- request eval
[map { "POST /eg\n[" . eg_event($_ => undef) . "]" }
    qw(id topic subject eventType eventTime dataVersion data)]
--- error_code eval
[(400) x 7]
--- error_log eval
[map { qq{misses required field "$_"} }
    qw(id topic subject eventType eventTime dataVersion data)]



=== TEST 19: each required CloudEvents attribute is required
--- request eval
[map { "POST /eg\n" . ce_event($_ => undef) } qw(id source type)]
--- error_code eval
[(400) x 3]
--- error_log eval
[map { qq{misses required field "$_"} } qw(id source type)]



=== TEST 20: a CloudEvents specversion other than 1.0 is refused with 400
--- request eval
"POST /eg\n" . ce_event(specversion => '"0.3"')
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: event 1 has unsupported specversion "0.3"



=== TEST 21: envelope fields of the wrong type are refused with 400
--- request eval
["POST /eg\n[" . eg_event(id => '42') . "]",
 "POST /eg\n[" . eg_event(topic => '{"a":1}') . "]",
 "POST /eg\n[" . eg_event(eventType => 'null') . "]"]
--- error_code eval
[400, 400, 400]
--- error_log
field "id" of event 1 is not a string
field "topic" of event 1 is not a string
field "eventType" of event 1 is not a string



=== TEST 22: an empty id is refused with 400
--- request eval
"POST /eg\n[" . eg_event(id => '""') . "]"
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: event 1 has an empty id



=== TEST 23: a duplicate envelope field is refused with 400
--- request eval
"POST /eg\n[" . (eg_event() =~ s/^\{/{"topic":"\/subscriptions\/evil",/r) . "]"
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: duplicate field "topic" in event 1



=== TEST 24: mixing Event Grid and CloudEvents events is refused with 400
--- request eval
"POST /eg\n[" . eg_event() . "," . ce_event() . "]"
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: event 2 mixes Event Grid and CloudEvents schemas



=== TEST 25: invalid UTF-8 in a string is refused with 400
--- request eval
"POST /eg\n[" . eg_event(data => qq{{"messageBody":"caf\xc3\x28"}}) . "]"
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: invalid JSON



=== TEST 26: invalid UTF-8 in a key is refused with 400
--- request eval
"POST /eg\n[" . eg_event(data => qq{{"\xff\xfe":"x"}}) . "]"
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: invalid JSON



=== TEST 27: JSON comments are refused with 400
--- request eval
"POST /eg\n/* hi */[" . eg_event() . "]"
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: invalid JSON



=== TEST 28: nesting of 64 levels is accepted
--- request eval
"POST /eg\n[" . eg_event(data => ('{"a":' x 62) . '1' . ('}' x 62)) . "]"
--- error_code: 200
--- response_headers
X-Events: 1



=== TEST 29: nesting deeper than 64 levels is refused with 400
--- request eval
"POST /eg\n[" . eg_event(data => ('{"a":' x 63) . '1' . ('}' x 63)) . "]"
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: JSON nested deeper than 64 levels



=== TEST 30: very deep nesting is refused without a crash
--- request eval
"POST /eg\n[" . eg_event(data => ('{"a":' x 100000) . '1' . ('}' x 100000)) . "]"
--- error_code: 400
--- error_log
acs_notify: rejected 400 json: JSON nested deeper than 64 levels



=== TEST 31: 5,000 events in a batch are accepted
--- request eval
"POST /eg\n" . eg_batch(5000)
--- error_code: 200
--- response_headers
X-Events: 5000



=== TEST 32: more than 5,000 events are refused with 413
--- request eval
"POST /eg\n" . eg_batch(5001)
--- error_code: 413
--- response_headers
X-Result: rejected:too_large
--- error_log
acs_notify: rejected 413 too_large: more than 5000 events in a batch



=== TEST 33: an event of almost 1 MB is accepted
--- request eval
"POST /eg\n[" . eg_event(data => '{"messageBody":"' . ('a' x 1047000) . '"}') . "]"
--- error_code: 200



=== TEST 34: an event over 1 MB is refused with 413
--- request eval
"POST /eg\n[" . eg_event(data => '{"messageBody":"' . ('a' x 1048576) . '"}') . "]"
--- error_code: 413
--- error_log eval
qr/acs_notify: rejected 413 too_large: event 1 is \d+ bytes, more than 1048576/



=== TEST 35: a body over client_max_body_size is refused with 413 by nginx
--- config
    location = /eg { acs_notify_eventgrid; client_max_body_size 1k; }
--- request eval
"POST /eg\n" . fixture('eg-batch-mixed.json')
--- error_code: 413
--- error_log
client intended to send too large body



=== TEST 36: a missing Content-Type is refused with 415
--- more_headers
aeg-event-type: Notification
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 415
--- error_log
acs_notify: rejected 415 content_type: unsupported content type "none"



=== TEST 37: a foreign Content-Type is refused with 415
--- more_headers
aeg-event-type: Notification
Content-Type: application/x-www-form-urlencoded
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 415
--- response_headers
X-Result: rejected:content_type
--- error_log
acs_notify: rejected 415 content_type: unsupported content type "application/x-www-form-urlencoded"



=== TEST 38: a charset other than UTF-8 is refused with 415
--- more_headers
aeg-event-type: Notification
Content-Type: application/json; charset=ISO-8859-1
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 415
--- error_log
acs_notify: rejected 415 content_type: unsupported content type "application/json; charset=ISO-8859-1"



=== TEST 39: media type and charset are compared case-insensitively
--- more_headers
aeg-event-type: Notification
Content-Type: Application/JSON;Charset="UTF-8"
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 200



=== TEST 40: a missing aeg-event-type header is refused with 400
--- more_headers
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 400
--- error_log
acs_notify: rejected 400 aeg_event_type: no aeg-event-type header



=== TEST 41: an unknown aeg-event-type is refused with 400
--- more_headers
aeg-event-type: Notify
Content-Type: application/json
--- request eval
"POST /eg\n" . fixture('eg-chat-message-received.json')
--- error_code: 400
--- error_log
acs_notify: rejected 400 aeg_event_type: unknown aeg-event-type "Notify"



=== TEST 42: a refused request's body is discarded, the connection reusable
--- raw_request eval
my $ok = fixture('eg-chat-message-received.json');
"POST /eg HTTP/1.1\r\nHost: localhost\r\naeg-event-type: bogus\r\n"
. "Content-Type: application/json\r\nContent-Length: " . length($ok) . "\r\n\r\n$ok"
. "POST /eg HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\naeg-event-type: Notification\r\n"
. "Content-Type: application/json\r\nContent-Length: " . length($ok) . "\r\n\r\n$ok"
--- error_code: 400
--- error_log
acs_notify: rejected 400 aeg_event_type
acs_notify: event "02272459-badb-4e2e-b538-4cb8a2f71da6" type "Microsoft.Communication.ChatMessageReceived"
--- no_error_log
client sent invalid method



=== TEST 43: PascalCase keys inside data do not upset parsing
--- request eval
"POST /eg\n[" . eg_event(eventType => '"Microsoft.Communication.SMSReceived"',
    data => '{"MessageId":"m1","From":"+14255550123","To":"+18005550199","Message":"hi"}') . "]"
--- error_code: 200
--- response_headers
X-Events: 1



=== TEST 44: a JSON syntax error's message has no trailing newline
--- request eval
["POST /eg\n[{\"id\":\"1\",]", "POST /eg\n[{\"id\":\"1\""]
--- error_code eval
[400, 400]
--- response_body eval
['{"error":{"code":"json","message":"invalid JSON at byte 12: parse error: invalid object key (must be a string)"}}',
 '{"error":{"code":"json","message":"invalid JSON: parse error: premature EOF"}}']



=== TEST 45: "specVersion" (as in Microsoft's published examples) is named in the refusal
--- request eval
["POST /eg\n" . ce_event(specversion => undef, specVersion => '"1.0"'),
 "POST /eg\n[" . ce_event(specversion => undef, SPECVERSION => '"1.0"') . "]",
 "POST /eg\n" . ce_event(specversion => undef)]
--- error_code eval
[400, 400, 400]
--- response_body eval
['{"error":{"code":"json","message":"event 1 has \\"specVersion\\" but no \\"specversion\\": CloudEvents attribute names are lower case"}}',
 '{"error":{"code":"json","message":"event 1 has \\"SPECVERSION\\" but no \\"specversion\\": CloudEvents attribute names are lower case"}}',
 '{"error":{"code":"json","message":"a single event object must be a CloudEvent, and it has no \\"specversion\\" (Event Grid events come in an array)"}}']



=== TEST 46: a stray "specVersion" does not refuse a complete Event Grid event
--- request eval
"POST /eg\n[" . eg_event(specVersion => '"1.0"') . "]"
--- error_code: 200



=== TEST 47: a control character in an envelope field the module keeps is refused with 400
--- request eval
["POST /eg\n[" . eg_event(id => '"ev\\n2026/12/05 [alert] forged"') . "]",
 "POST /eg\n[" . eg_event(topic => '"/subscriptions/x\\u0000y"') . "]",
 "POST /eg\n" . ce_event(type => qq{"Microsoft.Communication.\xc2\x9bChatMessageReceived"}),
 "POST /eg\n[" . eg_event(subject => '"a\\u001bb"') . "]"]
--- error_code eval
[400, 400, 400, 400]
--- response_body eval
['{"error":{"code":"json","message":"field \\"id\\" of event 1 holds a control character"}}',
 '{"error":{"code":"json","message":"field \\"topic\\" of event 1 holds a control character"}}',
 '{"error":{"code":"json","message":"field \\"type\\" of event 1 holds a control character"}}',
 '{"error":{"code":"json","message":"field \\"subject\\" of event 1 holds a control character"}}']
--- no_error_log
[alert]



=== TEST 48: U+0000 in a string of "data" is refused with 400, other control characters are kept
--- request eval
["POST /eg\n[" . eg_event(data => '{"recipientCommunicationIdentifier":{"rawId":"8:acs:a\\u0000b"}}') . "]",
 "POST /eg\n[" . eg_event(data => '{"messageBody":"two\\nlines\\t\\u001b"}') . "]"]
--- error_code eval
[400, 200]
--- response_body eval
['{"error":{"code":"json","message":"a string in \\"data\\" of event 1 holds U+0000"}}', '']
