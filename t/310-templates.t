# acs_notify_template end to end: the operator's payload replaces the
# built-in one, its ${...} placeholders filled with JSON-escaped values.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use AcsTest::Util;
use AcsTest::Dispatch;

my $t = AcsTest::Dispatch->new('310-templates');
my $srv = $t->srv;

$srv->write_conf(http => $t->hubs_conf, server => <<'SERVER');
        location = /eg {
            acs_notify_eventgrid hub=main voip_hub=voip;
            acs_notify_template ChatMessageReceived apns '{"aps":{"alert":{"title":"${data.senderDisplayName}","body":"${data.messageBody}"},"badge":1},"ids":{"event":"${id}","thread":"${data.ThreadId}","missing":"${data.nothing.here}"}}';
            acs_notify_template Microsoft.Communication.ChatMessageReceived fcmv1 '{"message":{"data":{"text":"${data.messageBody}","type":"${eventType}"},"android":{"priority":"normal"}}}';
            acs_notify_template IncomingCall apns-voip '{"aps":{},"data":{"cp":"${cp}","from":"${data.callerDisplayName}","callId":"${data.correlationId}"}}';
        }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=;
        }
SERVER
$srv->start;

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
is($srv->register($BOB, 'ios', platform => 'apns', handle => 'a0a0' x 16), 201, 'apns device');
is($srv->register($BOB, 'ios-voip', platform => 'apns-voip', handle => 'a0a1' x 16), 201, 'apns-voip device');
is($srv->register($BOB, 'droid', platform => 'fcmv1', handle => 'droid-token'), 201, 'fcmv1 device');

# a message whose text needs escaping
my $chat = fixture('eg-chat-message-received.json');
$chat =~ s/Are we still on for 3pm\?/Say \\"hi\\" \\\\ then\\n\\u00e9t\\u00e9 \\ud83d\\ude00/;

my $m = $t->mark;
my ($st) = $t->deliver('/eg', $chat);
is($st, 200, 'delivered');
my @j = $t->since($m);
my ($apns) = grep { $_->{handle} eq 'a0a0' x 16 } @j;
my ($fcm) = grep { $_->{handle} eq 'droid-token' } @j;

ok($apns && $apns->{status} == 201, 'the templated APNs payload is valid for the hub') or diag explain \@j;
is($apns->{json}{aps}{alert}{body}, "Say \"hi\" \\ then\n\x{e9}t\x{e9} \x{1F600}", 'values are JSON-escaped, UTF-8 kept');
is($apns->{json}{aps}{badge}, 1, 'the template\'s own fields are kept');
is($apns->{json}{ids}{event}, '02272459-badb-4e2e-b538-4cb8a2f71da6', '${id}');
is($apns->{json}{ids}{thread}, '19:6e5d6ca1d75044a49a36a7965ec4a906@thread.v2', '${data.ThreadId}: data keys match case-insensitively');
is($apns->{json}{ids}{missing}, '', 'a missing field is the empty string');
is($apns->{headers}{'apns-push-type'}, 'alert', 'the built-in headers stay');

ok($fcm && $fcm->{status} == 201, 'the templated FCM payload is valid') or diag explain $fcm;
is($fcm->{json}{message}{data}{type}, 'Microsoft.Communication.ChatMessageReceived', '${eventType}');
is($fcm->{json}{message}{android}{priority}, 'normal', 'the template decides android options');

$m = $t->mark;
($st) = $t->deliver('/eg', fresh(fixture('eg-incoming-call.json')));
is($st, 200, 'call delivered');
my ($voip) = grep { $_->{handle} eq 'a0a1' x 16 } $t->since($m);
ok($voip && $voip->{status} == 201, 'templated VoIP push accepted');
is($voip->{json}{data}{cp}, 'H4sIAAAAAAAEALVUzW7bOBB+FUPnSgZJQZ9WIA7auIfAPdTbQwE5Oggb1nUETmRbKVA', '${cp}');
is($voip->{json}{data}{from}, 'Alice', '${data.callerDisplayName}');
is($voip->{headers}{'apns-push-type'}, 'voip', 'VoIP headers stay');

$srv->stop;
my @bad = $srv->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg');

undef $t;
done_testing();
