# Push dispatch end to end: Event Grid delivery -> route -> registry ->
# render -> libcurl on nginx's event loop -> the Notification Hubs stand-in
# (t/lib/AcsTest/FakeNH.pm), with its journal as the witness.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Dispatch;

my $t = AcsTest::Dispatch->new('300-dispatch');
my $srv = $t->srv;
my $nh = $t->nh;

sub conf {
    my (%o) = @_;
    $srv->write_conf(workers => $o{workers} // 1,
                     http => $t->hubs_conf . ($o{http} // ''), server => <<"SERVER");
        location = /eg {
            acs_notify_eventgrid hub=main voip_hub=voip;
            acs_notify_dispatch_timeout 4s;
            add_header X-Result \$acs_notify_result always;
            add_header X-Pushes \$acs_notify_pushes always;
        }
        location = /eg-accepted {
            acs_notify_eventgrid hub=main voip_hub=voip;
            acs_notify_ack accepted;
            add_header X-Result \$acs_notify_result always;
        }
        location = /eg-listen { acs_notify_eventgrid hub=listen; }
        location = /eg-badca {
            acs_notify_eventgrid hub=badca;
            acs_notify_dispatch_timeout 2s;
        }
        location = /eg-down {
            acs_notify_eventgrid hub=down;
            acs_notify_dispatch_timeout 2s;
        }
        location = /eg-private {
            acs_notify_eventgrid hub=main;
            acs_notify_preview off;
        }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
        ${\ ($o{server} // '')}
SERVER
}

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
my $APNS_BOB = 'b0b0' x 16;
my $VOIP_BOB = 'b0b1' x 16;
my $FCM_BOB = 'bob-fcm-token:APA91bE_abc-123';

sub deliver { $t->deliver(@_) }
sub journal_since { $t->since(@_) }
sub count_since { my @x = $t->since(@_); return scalar @x }

conf();
$srv->start;

is($srv->register($BOB, 'iphone', platform => 'apns', handle => $APNS_BOB), 201, 'Bob registers an iPhone (alerts)');
is($srv->register($BOB, 'iphone-voip', platform => 'apns-voip', handle => $VOIP_BOB), 201, '... its VoIP token');
is($srv->register($BOB, 'pixel', platform => 'fcmv1', handle => $FCM_BOB), 201, '... and an Android phone');

# --- a chat message

my $chat = fixture('eg-chat-message-received.json');
my $n0 = () = $nh->requests;
my ($st, $h, $b) = deliver('/eg', $chat);
is($st, 200, 'chat message: 200 once the pushes are accepted');
is($h->{'x-result'}, 'dispatched', '$acs_notify_result is dispatched');
is($h->{'x-pushes'}, '2', '$acs_notify_pushes counts 2 pushes');

my @j = journal_since($n0);
is(scalar @j, 2, 'two pushes reached Notification Hubs (alert + FCM, not VoIP)');
my ($apns) = grep { $_->{handle} eq $APNS_BOB } @j;
my ($fcm) = grep { $_->{handle} eq $FCM_BOB } @j;

ok($apns && $apns->{status} == 201, 'APNs push accepted by the stand-in (SAS, headers, body all valid)')
    or diag explain $apns;
is($apns->{path}, '/acs-push/messages/', 'sent to the main hub');
like($apns->{query}, qr/(^|&)direct(&|=|$)/, 'direct send, never a broadcast');
is($apns->{format}, 'apple', 'ServiceBusNotification-Format: apple');
is($apns->{headers}{'apns-push-type'}, 'alert', 'apns-push-type: alert');
is($apns->{headers}{'apns-priority'}, '10', 'apns-priority: 10');
ok($apns->{headers}{'apns-collapse-id'}, 'a collapse id');
is($apns->{json}{aps}{alert}{title}, 'Alice', 'alert title is the sender');
is($apns->{json}{aps}{alert}{body}, 'Are we still on for 3pm?', 'alert body is the message');
is($apns->{json}{aps}{'thread-id'}, '19:6e5d6ca1d75044a49a36a7965ec4a906@thread.v2', 'thread-id');

ok($fcm && $fcm->{status} == 201, 'FCM v1 push accepted') or diag explain $fcm;
is($fcm->{format}, 'fcmv1', 'ServiceBusNotification-Format: fcmv1');
is($fcm->{json}{message}{notification}{body}, 'Are we still on for 3pm?', 'FCM notification body');
is($fcm->{json}{message}{android}{priority}, 'high', 'android priority high');
ok(!grep({ ref } values %{ $fcm->{json}{message}{data} // {} }), 'FCM data values are strings');

# --- the same delivery again: nothing is pushed twice

$n0 = () = $nh->requests;
($st, $h) = deliver('/eg', $chat);
is($st, 200, 'redelivery: 200');
is(count_since($n0), 0, 'redelivery: no push sent again');
like($srv->new_log, qr/already pushed to device "iphone"/, 'the skip is logged');

# --- an event id a sender chose is logged escaped by dispatch too

my $odd = $chat =~ s/"id": "[^"]*"/"id": "odd\\"id\\u00e9"/r;
deliver('/eg', $odd);
deliver('/eg', $odd);
like($srv->new_log, qr/event "odd\\"id\\xc3\\xa9" already pushed to device "iphone"/,
     'the event id in the skip is escaped');

# --- an incoming call

$n0 = () = $nh->requests;
# a call that rings now (the fixture's 2025 time would be a stale call)
($st, $h) = deliver('/eg', fresh(fixture('eg-incoming-call.json')));
is($st, 200, 'incoming call: 200');
@j = journal_since($n0);
my ($voip) = grep { $_->{handle} eq $VOIP_BOB } @j;
my ($fcall) = grep { $_->{handle} eq $FCM_BOB } @j;
ok(!grep({ $_->{handle} eq $APNS_BOB } @j), 'no alert to the iPhone that has a VoIP token');
ok($voip && $voip->{status} == 201, 'VoIP push accepted') or diag explain \@j;
is($voip->{path}, '/acs-voip/messages/', 'VoIP push goes to the VoIP hub');
is($voip->{headers}{'apns-push-type'}, 'voip', 'apns-push-type: voip');
is($voip->{headers}{'apns-expiration'}, '0', 'apns-expiration: 0');
is_deeply($voip->{json}{aps}, {}, 'aps is empty');
is($voip->{json}{data}{eventId}, 107, 'eventId 107');
is($voip->{json}{data}{callId}, 'd732db64-4803-462d-be9c-518943ea2b7a', 'callId is the correlation id');
is($voip->{json}{data}{cp}, 'H4sIAAAAAAAEALVUzW7bOBB+FUPnSgZJQZ9WIA7auIfAPdTbQwE5Oggb1nUETmRbKVA',
   'cp is the cc field of the incoming call context');
is($voip->{json}{data}{displayName}, 'Alice', 'displayName');
is($voip->{json}{data}{videoCall}, 'false', 'videoCall "false"');
ok($fcall && !$fcall->{json}{message}{notification}, 'Android gets a data message');
like($fcall->{json}{message}{android}{ttl} // '', qr/^(?:11\d|120)s\z/,
     'android ttl: the ring time left of the default 120s');
is($fcall->{json}{message}{data}{eventId}, '107', 'FCM eventId is the string "107"');

# --- events with no push

$n0 = () = $nh->requests;
($st, $h) = deliver('/eg', fixture('eg-call-started.json'));
is($st, 200, 'CallStarted: 200');
($st, $h) = deliver('/eg', fixture('eg-chat-message-received-in-thread.json'));
is($st, 200, 'thread-level chat message: 200');
is(count_since($n0), 0, 'no push for events that need none');

# a recipient without devices
my $nobody = fixture('eg-chat-participant-added-to-thread-with-user.json');
$nobody =~ s/_00000008-578d-7d05-83fe-084822000f6d/_00000008-nobody/g;
($st) = deliver('/eg', $nobody);
is($st, 200, 'a recipient without devices: 200');

# --- privacy: acs_notify_preview off

my $chat2 = $chat =~ s/02272459-badb/12272459-badb/r;
$n0 = () = $nh->requests;
($st) = deliver('/eg-private', $chat2);
is($st, 200, 'preview off: 200');
@j = journal_since($n0);
($apns) = grep { $_->{handle} eq $APNS_BOB } @j;
unlike(encode_json($apns->{json} // {}), qr/3pm/, 'preview off: the message text is not in the push');

# --- failure classes, one device each

my $CAROL = '8:acs:carol';
my %H = (
    rejected => '0400' . 'c' x 60,
    gone     => '0410' . 'c' x 60,
    flaky    => '05031' . 'c' x 59,
    throttle => '04291' . 'c' x 59,
);
for my $d (sort keys %H) {
    is($srv->register($CAROL, $d, platform => 'apns', handle => $H{$d}), 201, "Carol registers $d");
}
my $carol_chat = $chat =~ s/\Q$BOB\E/$CAROL/gr =~ s/02272459-badb/22272459-badb/r;

$n0 = () = $nh->requests;
$srv->new_log;
my $dt;
($st, $h, $b, $dt) = deliver('/eg', $carol_chat);
is($st, 200, 'rejected, gone, 503-then-ok and 429-then-ok devices: 200 in the end');
ok($dt >= 1.9, sprintf('the 429 answer was honoured: Retry-After 2s (took %.1fs)', $dt));
@j = journal_since($n0);
is(scalar(grep { $_->{handle} eq $H{flaky} } @j), 2, 'the 503 device was tried twice');
is(scalar(grep { $_->{handle} eq $H{throttle} } @j), 2, 'the 429 device was tried twice');
is(scalar(grep { $_->{handle} eq $H{rejected} } @j), 1, 'the 400 device was not retried');
my $log = $srv->new_log;
like($log, qr/\[error\].*Notification Hubs "main" rejected the push of event "22272459-badb-4e2e-b538-4cb8a2f71da6" to 0400cccc\.\.\.: 400, TrackingId: \S+/,
     'a rejected push is logged at error with the TrackingId');
like($log, qr/device handle 0410cccc\.\.\. of "8:acs:carol" gone, removed/, 'a gone handle is logged');
unlike($log, qr/c{20}/, 'handles are never logged in full');
my (undef, undef, $list) = $srv->request(GET => '/acs/users/8%3Aacs%3Acarol/devices', '',
    { map { /^([^:]+): (.*)$/ } split /\n/, signed_headers('GET', '/acs/users/8%3Aacs%3Acarol/devices', '') });
unlike($list, qr/"deviceId":"gone"/, 'the gone device was removed from the registry');
like($list, qr/"deviceId":"flaky"/, 'the others stay');

# --- always failing: 503 at the deadline, Event Grid retries

my $DAVE = '8:acs:dave';
is($srv->register($DAVE, 'd1', platform => 'apns', handle => '0503' . 'd' x 60), 201, 'Dave registers a failing device');
my $dave_chat = $chat =~ s/\Q$BOB\E/$DAVE/gr =~ s/02272459-badb/32272459-badb/r;
($st, $h, $b, $dt) = deliver('/eg', $dave_chat);
is($st, 503, 'a push still failing at the deadline: 503');
is($h->{'retry-after'}, '10', '... with Retry-After');
ok($dt >= 1 && $dt < 4.5, sprintf('... once no retry fits before the 4s deadline (%.1fs)', $dt));
is($h->{'x-result'}, 'unavailable:dispatch', '$acs_notify_result says why');
like($srv->new_log, qr/\[error\].*push of event "32272459[^"]*" to 0503dddd\.\.\. through "main" failed after \d+ attempts/, 'the failure is logged at error');

# --- ack accepted: 202 at once, pushes afterwards

my $chat3 = $chat =~ s/02272459-badb/42272459-badb/r;
$n0 = () = $nh->requests;
($st, $h, $b, $dt) = deliver('/eg-accepted', $chat3);
is($st, 202, 'acs_notify_ack accepted: 202');
is($h->{'x-result'}, 'accepted', '$acs_notify_result accepted');
ok($dt < 1, 'answered before the pushes');
my @w = $nh->wait_requests($n0 + 2, 5);
is(count_since($n0), 2, 'the pushes are sent after the answer');

# accepted: the request and its memory are gone while the pushes go on; a
# retry and a gone handle then still name the right event and user (other
# requests reuse the freed memory meanwhile)
my $ERIN = '8:acs:erin';
my %E = (gone => '0410' . 'e' x 60, flaky => '05031' . 'e' x 59);
for my $d (sort keys %E) {
    is($srv->register($ERIN, $d, platform => 'apns', handle => $E{$d}), 201, "Erin registers $d");
}
$srv->new_log;
$n0 = () = $nh->requests;
($st) = deliver('/eg-accepted', $chat =~ s/\Q$BOB\E/$ERIN/gr =~ s/02272459-badb/82272459-badb/r);
is($st, 202, 'accepted: 202 for Erin');
$srv->request(GET => '/acs/users/8%3Aacs%3Anobody/devices', 'x' x 3000,
    { map { /^([^:]+): (.*)$/ } split /\n/, signed_headers('GET', '/acs/users/8%3Aacs%3Anobody/devices', 'x' x 3000) })
    for 1 .. 3;
$nh->wait_requests($n0 + 3, 5);
sleep 0.5;
$log = $srv->new_log;
like($log, qr/push of event "82272459-badb-4e2e-b538-4cb8a2f71da6" to 05031eee\.\.\. will be retried/,
     'accepted: the retry names the event');
like($log, qr/device handle 0410eeee\.\.\. of "8:acs:erin" gone, removed/, 'accepted: the gone handle is removed from the right user');
(undef, undef, $list) = $srv->request(GET => '/acs/users/8%3Aacs%3Aerin/devices', '',
    { map { /^([^:]+): (.*)$/ } split /\n/, signed_headers('GET', '/acs/users/8%3Aacs%3Aerin/devices', '') });
unlike($list, qr/"deviceId":"gone"/, 'accepted: the gone device is no longer listed');

# --- configuration errors and transport failures

$n0 = () = $nh->requests;
($st) = deliver('/eg-listen', $chat =~ s/02272459-badb/52272459-badb/r);
is($st, 200, 'a rule without the Send right: the push is rejected, final');
like($srv->new_log, qr/\[error\].*Notification Hubs "listen" rejected the push .*: 403.*\(pushes need a rule with the Send right\)/, 'one clear [error] for the missing Send right');

$n0 = () = $nh->requests;
($st) = deliver('/eg-badca', $chat =~ s/02272459-badb/62272459-badb/r);
is($st, 503, 'a hub whose certificate does not verify: 503');
is(scalar(grep { $_->{status} } journal_since($n0)), 0, 'no push was sent over an unverified TLS connection');
like($srv->new_log, qr/\[error\].*through "badca" failed after \d+ attempts: .*(certificate|SSL)/i, 'the TLS failure is reported');

($st, undef, undef, $dt) = deliver('/eg-down', $chat =~ s/02272459-badb/72272459-badb/r);
is($st, 503, 'the hub down: 503');
ok($dt >= 0.5 && $dt < 2.5, sprintf('... within the 2s deadline (%.1fs)', $dt));

$srv->stop;

# --- back-pressure: a queue of one push

conf(http => 'acs_notify_queue 1;');
$srv->start;
($st, $h) = deliver('/eg', $chat =~ s/02272459-badb/82272459-badb/r);
is($st, 200, 'a batch larger than the queue goes alone when the worker is idle');

$nh->set_rules([{ prefix => $APNS_BOB, status => 201, delay_ms => 1500, times => 100 }]);
my $busy = fork // die;
if ($busy == 0) {
    deliver('/eg', $chat =~ s/02272459-badb/83272459-badb/r);
    POSIX::_exit(0);
}
sleep 0.4;
($st, $h) = deliver('/eg', $chat =~ s/02272459-badb/84272459-badb/r);
is($st, 503, 'pushes that do not fit beside those in flight: 503');
is($h->{'retry-after'}, '10', '... with Retry-After');
like($srv->new_log, qr/queue full/, 'logged');
waitpid $busy, 0;
$nh->set_rules([]);
$srv->stop;

# --- reload while pushes are in flight: each completes once

conf(workers => 2);
$srv->start;
$ERIN = '8:acs:erin';
$srv->register($ERIN, "e$_", platform => 'fcmv1', handle => "slow-erin-$_") for 1 .. 4;
$nh->set_rules([{ prefix => 'slow-erin', status => 201, delay_ms => 1500, times => 100 }]);
my $erin_chat = $chat =~ s/\Q$BOB\E/$ERIN/gr =~ s/02272459-badb/92272459-badb/r;
$n0 = () = $nh->requests;
my $pid = fork // die;
if ($pid == 0) {
    my ($s) = deliver('/eg', $erin_chat);
    POSIX::_exit($s == 200 ? 0 : 1);
}
sleep 0.5;
$srv->reload;
waitpid $pid, 0;
is($? >> 8, 0, 'a delivery in flight during a reload still gets its 200');
@j = grep { $_->{handle} =~ /^slow-erin/ } journal_since($n0);
is(scalar @j, 4, 'every push of it reached the hub exactly once');
$nh->set_rules([]);
$srv->stop;

my @bad = $srv->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg in the error log');

undef $t;
done_testing();
