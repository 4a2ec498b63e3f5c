# A call rings only while it can be answered (acs_notify_call_ttl), and a
# chat event too old to matter is not pushed (acs_notify_max_age): stale
# events in both schemas just under and just over their limit, times that
# cannot be read or lie ahead, a call push that expires in the queue
# behind a hung hub or while its hub answers 503, the platforms' own
# expiry (FCM v1 android.ttl, WNS X-WNS-TTL, apns-expiration of a call
# alert, none for Web Push), and the counters.  The Notification Hubs
# stand-in's journal is the witness of what reached the hub.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Dispatch;
use AcsTest::Prom qw(parse_prometheus);

my $t = AcsTest::Dispatch->new('375-call-ttl');
my $srv = $t->srv;
my $nh = $t->nh;
my ($dir, $port, $ca) = ($t->dir, $nh->port, $nh->ca);

$srv->write_conf(http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $dir/../registry;
    acs_notify_hub main connection_string=file:$dir/nh.conn hub=acs-push
                   connect_to=127.0.0.1:$port ca_file=$ca timeout=2s;
    acs_notify_hub voip connection_string=file:$dir/nh.conn hub=acs-voip
                   connect_to=127.0.0.1:$port ca_file=$ca timeout=2s;
    acs_notify_hub one connection_string=file:$dir/nh.conn hub=acs-push
                   connect_to=localhost:$port ca_file=$ca max_connections=1
                   timeout=3s;
HTTP
        location = /eg {
            acs_notify_eventgrid hub=main voip_hub=voip;
            acs_notify_call_ttl 60s;
            acs_notify_max_age 1h;
            acs_notify_dispatch_timeout 10s;
            add_header X-Result \$acs_notify_result always;
            add_header X-Pushes \$acs_notify_pushes always;
            add_header X-Stale \$acs_notify_stale always;
        }
        location = /eg-default {
            acs_notify_eventgrid hub=main voip_hub=voip;
            add_header X-Result \$acs_notify_result always;
        }
        location = /eg-off {
            acs_notify_eventgrid hub=main voip_hub=voip;
            acs_notify_call_ttl off;
            add_header X-Result \$acs_notify_result always;
        }
        location = /eg-short {
            acs_notify_eventgrid hub=main voip_hub=voip;
            acs_notify_call_ttl 3s;
            acs_notify_dispatch_timeout 10s;
            add_header X-Result \$acs_notify_result always;
        }
        location = /eg-one {
            acs_notify_eventgrid hub=one;
            acs_notify_call_ttl 2s;
            acs_notify_dispatch_timeout 10s;
            add_header X-Result \$acs_notify_result always;
        }
        location = /eg-one-deadline {
            acs_notify_eventgrid hub=one;
            acs_notify_call_ttl 1s;
            acs_notify_dispatch_timeout 2s;
            add_header X-Result \$acs_notify_result always;
        }
        location = /eg-one-accepted {
            acs_notify_eventgrid hub=one;
            acs_notify_ack accepted;
            acs_notify_dispatch_timeout 4s;
        }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
$srv->start;

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
my $VOIP_BOB = 'b0b1' x 16;
my $FCM_BOB = 'bob-fcm-token:APA91bE_abc-123';
is($srv->register($BOB, 'iphone-voip', platform => 'apns-voip', handle => $VOIP_BOB), 201,
   'Bob registers a VoIP token');
is($srv->register($BOB, 'pixel', platform => 'fcmv1', handle => $FCM_BOB), 201, '... and an Android phone');

my $n = 0;

# the fixture's call to Bob with an id of its own, $age seconds old
sub call {
    my (%o) = @_;
    my $c = fixture('eg-incoming-call.json');
    my $id = $o{id} // sprintf('c%07d-e298-46ba-bc42-dab0eda92581', ++$n);
    $c =~ s/e80026e7-e298-46ba-bc42-dab0eda92581/$id/;
    $c =~ s/8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d/$o{to}/g
        if $o{to};
    return defined $o{time} ? ($c =~ s/"eventTime": "[^"]*"/"eventTime": "$o{time}"/r)
                            : fresh($c, $o{age} // 0);
}

# the same call as a CloudEvents 1.0 event
sub ce_call {
    my (%o) = @_;
    my $eg = decode_json(call(%o))->[0];
    my $ce = {
        specversion => '1.0', id => $eg->{id}, source => $eg->{topic},
        type => $eg->{eventType}, subject => $eg->{subject}, data => $eg->{data},
    };
    $ce->{time} = $eg->{eventTime} unless $o{no_time};
    return JSON::PP->new->canonical->encode($ce);
}

sub chat {
    my (%o) = @_;
    my $c = fixture('eg-chat-message-received.json');
    my $id = sprintf('m%07d-badb-4e2e-b538-4cb8a2f71da6', ++$n);
    $c =~ s/02272459-badb-4e2e-b538-4cb8a2f71da6/$id/;
    return fresh($c, $o{age} // 0);
}

sub count_since { my @x = $t->since($_[0]); return scalar @x }
sub to_bob { my ($prefix, @j) = @_; return grep { ($_->{handle} // '') eq $prefix } @j }
sub ce_deliver {
    my ($path, $body) = @_;
    return $t->deliver($path, $body, 'Content-Type' => 'application/cloudevents+json; charset=utf-8');
}

# --- a call 10 minutes old: no push, 200, stale (Event Grid schema)

my $s0 = $srv->status;
my $m = $t->mark;
my ($st, $h) = $t->deliver('/eg', call(age => 600));
is($st, 200, 'a call 10 minutes old: 200 (retrying it cannot help)');
is($h->{'x-result'}, 'stale', '... $acs_notify_result is stale');
is($h->{'x-pushes'}, '0', '... no push');
is($h->{'x-stale'}, '1', '... $acs_notify_stale counts it');
is(count_since($m), 0, '... nothing reached the hub');
like($srv->new_log,
     qr/\[info\].*acs_notify: event "c0000001-[^"]*" \(Microsoft\.Communication\.IncomingCall\) is 6\d\d\.\d{3}s old, over acs_notify_call_ttl 60\.000s: not pushed \(stale\)/,
     '... one info line names the event and its age');

# --- and in CloudEvents

$m = $t->mark;
($st, $h) = ce_deliver('/eg', ce_call(age => 600));
is($st, 200, 'a CloudEvents call 10 minutes old: 200');
is($h->{'x-result'}, 'stale', '... stale');
is(count_since($m), 0, '... nothing reached the hub');
like($srv->new_log, qr/is 6\d\d\.\d{3}s old, over acs_notify_call_ttl/, '... logged');

# --- just under and just over the ring time, both schemas

$m = $t->mark;
($st, $h) = $t->deliver('/eg', call(age => 55));
is($st, 200, 'a call 55s old (ttl 60s): 200');
is($h->{'x-result'}, 'dispatched', '... dispatched');
is(scalar(to_bob($VOIP_BOB, $t->since($m))), 1, '... it rings: the VoIP push reached the hub');

$m = $t->mark;
($st, $h) = $t->deliver('/eg', call(age => 65));
is($h->{'x-result'}, 'stale', 'a call 65s old: stale');
is(count_since($m), 0, '... no push');

$m = $t->mark;
($st, $h) = ce_deliver('/eg', ce_call(age => 55));
is($h->{'x-result'}, 'dispatched', 'a CloudEvents call 55s old: dispatched');
is(scalar(to_bob($VOIP_BOB, $t->since($m))), 1, '... it rings');

$m = $t->mark;
($st, $h) = ce_deliver('/eg', ce_call(age => 65));
is($h->{'x-result'}, 'stale', 'a CloudEvents call 65s old: stale');
is(count_since($m), 0, '... no push');
$srv->new_log;

# --- the default ring time: 120 seconds

$m = $t->mark;
($st, $h) = $t->deliver('/eg-default', call(age => 5));
is($h->{'x-result'}, 'dispatched', 'the default: a call 5s old rings');
is(scalar(to_bob($VOIP_BOB, $t->since($m))), 1, '... pushed');
$m = $t->mark;
($st, $h) = $t->deliver('/eg-default', call(age => 115));
is($h->{'x-result'}, 'dispatched', '... one 115s old still rings');
$m = $t->mark;
($st, $h) = $t->deliver('/eg-default', call(age => 125));
is($h->{'x-result'}, 'stale', '... one 125s old is stale');
is(count_since($m), 0, '... no push');

# --- acs_notify_call_ttl off: as before

$m = $t->mark;
($st, $h) = $t->deliver('/eg-off', call(age => 3600));
is($h->{'x-result'}, 'dispatched', 'acs_notify_call_ttl off: an hour-old call is pushed');
my ($f) = to_bob($FCM_BOB, $t->since($m));
is($f->{json}{message}{android}{ttl}, '60s', '... FCM ttl stays "60s"');

# --- times in the future, times that cannot be read: pushed, logged once

$m = $t->mark;
($st, $h) = $t->deliver('/eg', call(age => -120));
is($h->{'x-result'}, 'dispatched', 'a call 2 minutes in the future is taken for now: pushed');
($f) = to_bob($FCM_BOB, $t->since($m));
like($f->{json}{message}{android}{ttl} // '', qr/^(?:5\d|60)s\z/, '... with the whole ring time');
unlike($srv->new_log, qr/age is not known/, '... no line about its time');

$m = $t->mark;
($st, $h) = $t->deliver('/eg', call(age => -900));
is($h->{'x-result'}, 'dispatched', 'a call 15 minutes in the future: pushed');
my @lines = grep { /age is not known/ } split /\n/, $srv->new_log;
is(scalar @lines, 1, '... one line');
like($lines[0] // '', qr/\[info\].*event "c\d+-[^"]*" has a future time "20\d\d-[^"]+": its age is not known, it is pushed/,
     '... at info, with the time');

$m = $t->mark;
($st, $h) = $t->deliver('/eg', call(time => 'yesterday'));
is($h->{'x-result'}, 'dispatched', 'a call whose eventTime is "yesterday": pushed');
is(scalar(to_bob($VOIP_BOB, $t->since($m))), 1, '... it rings');
@lines = grep { /age is not known/ } split /\n/, $srv->new_log;
is(scalar @lines, 1, '... logged once');
like($lines[0] // '', qr/has no readable time "yesterday"/, '... saying so');

$m = $t->mark;
($st, $h) = ce_deliver('/eg', ce_call(no_time => 1));
is($h->{'x-result'}, 'dispatched', 'a CloudEvents call without time: pushed');
like($srv->new_log, qr/has no readable time "": its age is not known/, '... logged');

# --- chat: acs_notify_max_age

$m = $t->mark;
($st, $h) = $t->deliver('/eg', chat(age => 7200));
is($st, 200, 'a chat message 2 hours old (max_age 1h): 200');
is($h->{'x-result'}, 'stale', '... stale');
is(count_since($m), 0, '... no push');
like($srv->new_log, qr/\(Microsoft\.Communication\.ChatMessageReceived\) is 72\d\d\.\d{3}s old, over acs_notify_max_age 3600\.000s: not pushed \(stale\)/,
     '... logged');

$m = $t->mark;
($st, $h) = $t->deliver('/eg', chat(age => 1800));
is($h->{'x-result'}, 'dispatched', 'one 30 minutes old is pushed');
ok(scalar(to_bob($FCM_BOB, $t->since($m))), '... to the Android phone');

$m = $t->mark;
($st, $h) = $t->deliver('/eg-default', chat(age => 86400 * 30));
is($h->{'x-result'}, 'dispatched', 'without acs_notify_max_age a chat message a month old is pushed');

# --- a delivery mixing stale and fresh events reads as its fresh pushes

my $mixed = encode_json([ map { @{ decode_json($_) } } call(age => 600), chat(age => 0) ]);
$m = $t->mark;
($st, $h) = $t->deliver('/eg', $mixed);
is($st, 200, 'a stale call and a fresh chat message: 200');
is($h->{'x-result'}, 'dispatched', '... dispatched: something was pushed');
is($h->{'x-stale'}, '1', '... one stale event');
is($h->{'x-pushes'}, '1', '... one push (the chat message to Android)');
$srv->new_log;

# --- the platforms' expiry follows the ring time left

my $CAROL = '8:acs:carol';
my ($WNS, $WEB, $APNS_CAROL, $FCM_CAROL) = ('https://wns2-par02p.notify.windows.com/w/?token=carol',
    'https://fcm.googleapis.com/fcm/send/carol', 'ca01' x 16, 'carol-fcm');
$srv->register($CAROL, 'desk', platform => 'wns', handle => $WNS);
$srv->register($CAROL, 'web', platform => 'browser', handle => $WEB,
               p256dh => 'BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM',
               auth => 'tBHItJI5svbpez7KI4CCXg');
$srv->register($CAROL, 'iphone', platform => 'apns', handle => $APNS_CAROL);
$srv->register($CAROL, 'pixel', platform => 'fcmv1', handle => $FCM_CAROL);

my $t0 = time;
my $call = call(to => $CAROL, age => 10);
$m = $t->mark;
($st, $h) = $t->deliver('/eg', $call);
is($h->{'x-result'}, 'dispatched', 'a call 10s old to Carol\'s four devices');
my @j = $t->since($m);
my ($wns) = to_bob($WNS, @j);
my ($web) = to_bob($WEB, @j);
my ($alert) = to_bob($APNS_CAROL, @j);
($f) = to_bob($FCM_CAROL, @j);
ok($f && $f->{status} == 201, 'FCM v1 accepted it') or diag explain \@j;
my ($fttl) = ($f->{json}{message}{android}{ttl} // '') =~ /^(\d+)s\z/;
ok(defined $fttl && $fttl <= 50 && $fttl >= 45, "FCM android.ttl is the ring time left: ${\ ($fttl // 'none')}s of 50s");
ok($wns && $wns->{status} == 201, 'WNS accepted it');
my $wttl = $wns->{headers}{'x-wns-ttl'} // '';
ok($wttl =~ /^\d+\z/ && $wttl <= 50 && $wttl >= 45, "X-WNS-TTL is the ring time left: $wttl");
ok($alert && $alert->{status} == 201, 'the call alert to the iPhone accepted');
my $exp = $alert->{headers}{'apns-expiration'} // 0;
my $end = int($t0 - 10 + 60);
ok($exp >= $end - 3 && $exp <= $end + 3, "apns-expiration of the alert is when the ring ends ($exp, about $end)");
ok($web && $web->{status} == 201, 'Web Push accepted it');
ok(!exists $web->{headers}{ttl}, '... with no TTL header: Notification Hubs documents none for browser sends');

$m = $t->mark;
$t->deliver('/eg', call(age => 5));
my ($voip) = to_bob($VOIP_BOB, $t->since($m));
is($voip->{headers}{'apns-expiration'}, '0', 'a VoIP push keeps apns-expiration: 0');

$m = $t->mark;
$t->deliver('/eg', chat(age => 5));
my @chat = $t->since($m);
ok(!grep({ exists $_->{headers}{'apns-expiration'} || exists $_->{headers}{'x-wns-ttl'} } @chat),
   'chat pushes carry no expiry');
($f) = to_bob($FCM_BOB, @chat);
ok($f && !exists $f->{json}{message}{android}{ttl}, '... FCM chat has no ttl');

# --- a call push that expires in the queue behind a hung hub

# one connection to the hub: a chat push to a handle that hangs (0777)
# holds it for the hub's timeout (3s); the call (ring time 2s) waits
my $DAVE = '8:acs:dave';
$srv->register('8:acs:hang', 'd1', platform => 'fcmv1', handle => '0777-hang-token');
$srv->register($DAVE, 'd1', platform => 'fcmv1', handle => 'dave-fcm-token');
my $hang = fixture('eg-chat-message-received.json');
$hang =~ s/8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d/8:acs:hang/g;
$m = $t->mark;
my $s1 = $srv->status;
($st) = $t->deliver('/eg-one-accepted', $hang);
is($st, 202, 'a chat push to a hanging handle is taken (202)');
$nh->wait_requests($m + 1, 5);
($st, $h) = $t->deliver('/eg-one', call(to => $DAVE, age => 0));
is($st, 200, 'the call queued behind it: 200, not 503');
is($h->{'x-result'}, 'dispatched', '... dispatched (expired is final, not a failure)');
sleep 0.5;
ok(!grep({ ($_->{handle} // '') eq 'dave-fcm-token' } $t->since($m)), '... and it never reached the hub');
like($srv->new_log, qr/\[info\].*call push of event "c\d+-[^"]*" to dave-fcm\.\.\. expired after 0 attempts: its ring time ended \d+ms ago; not sent/,
     '... logged at info as expired');
my $s2 = $srv->status;
is($s2->{pushes}{fcmv1}{expired} - $s1->{pushes}{fcmv1}{expired}, 1, '... counted: pushes.fcmv1.expired');
is($s2->{pushes}{fcmv1}{failed} - $s1->{pushes}{fcmv1}{failed}, 0, '... not as failed');

# the same when the delivery's deadline (2s) comes before the hung push
# frees the connection (3s): the call's ring time (1s) is over by then,
# it expires at the deadline, and the answer is still 200

sub lane_idle {
    for (1 .. 100) { return 1 if $srv->status->{in_flight} == 0; sleep 0.2 }
    return 0;
}
ok(lane_idle(), 'the hung push is over');
$srv->register('8:acs:hang2', 'd1', platform => 'fcmv1', handle => '0777-hang-token-2');
(my $hang2 = $hang) =~ s/8:acs:hang/8:acs:hang2/g;
$hang2 =~ s/"id": "[^"]*"/"id": "hang-2"/;
$m = $t->mark;
$s1 = $srv->status;
($st) = $t->deliver('/eg-one-accepted', $hang2);
$nh->wait_requests($m + 1, 5);
($st, $h) = $t->deliver('/eg-one-deadline', call(to => $DAVE, age => 0));
is($st, 200, 'a call still queued at the deadline, past its ring time: 200, not 503');
is($h->{'x-result'}, 'dispatched', '... dispatched');
ok(!grep({ ($_->{handle} // '') eq 'dave-fcm-token' } $t->since($m)), '... never sent');
$s2 = $srv->status;
is($s2->{pushes}{fcmv1}{expired} - $s1->{pushes}{fcmv1}{expired}, 1, '... expired');
like($srv->new_log, qr/to dave-fcm\.\.\. expired after 0 attempts: its ring time ended \d+ms ago/, '... logged');
ok(lane_idle(), 'the second hung push is over');

# --- a hub that answers 503 until the ring time has passed

my $ERIN = '8:acs:erin';
$srv->register($ERIN, 'd1', platform => 'fcmv1', handle => 'erin-503-token');
$nh->set_rules([{ prefix => 'erin-503', status => 503 }]);
$call = call(to => $ERIN, age => 0);
my ($etime) = $call =~ /"eventTime": "([^"]+)"/;
$m = $t->mark;
$s1 = $srv->status;
($st, $h) = $t->deliver('/eg-short', $call);
is($st, 200, 'a call whose hub answers 503 (ring time 3s): 200 once its ring time is over');
is($h->{'x-result'}, 'dispatched', '... dispatched: the push expired, it did not fail');
$nh->set_rules([]);
sleep 1.5;
my @tries = grep { ($_->{handle} // '') eq 'erin-503-token' } $t->since($m);
ok(@tries >= 2, scalar(@tries) . ' attempts, each answered 503') or diag explain \@tries;
ok(!grep({ $_->{status} != 503 } @tries), '... none was accepted');
my $ring_end = epoch_of($etime) + 3;
my @late = grep { $_->{time} > $ring_end } @tries;
is(scalar @late, 0, '... none was sent after the ring time ended') or diag explain \@late;
like($srv->new_log, qr/call push of event "c\d+-[^"]*" to erin-503\.\.\. expired after \d+ attempts: its ring time ends in \d+ms, before its retry in \d+ms; not sent/,
     '... the retry that would come too late is not made');
$s2 = $srv->status;
is($s2->{pushes}{fcmv1}{expired} - $s1->{pushes}{fcmv1}{expired}, 1, '... expired counted');

sub epoch_of {
    my ($s) = @_;
    my ($y, $mo, $d, $hh, $mi, $ss, $fr) = $s =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)(\.\d+)?Z$/ or die $s;
    require Time::Local;
    return Time::Local::timegm($ss, $mi, $hh, $d, $mo - 1, $y) + ($fr // 0);
}

# --- the counters

my $s = $srv->status;
ok($s->{stale_events}{call} - $s0->{stale_events}{call} >= 6, "stale calls counted ($s->{stale_events}{call})");
is($s->{stale_events}{other} - $s0->{stale_events}{other}, 1, 'one stale chat event counted');
ok($s->{requests}{stale} >= 6, "requests answered stale counted ($s->{requests}{stale})");
my (undef, undef, $text) = $srv->request(GET => '/status?format=prometheus');
my $prom = eval { parse_prometheus($text) } // {};
is($prom->{'acs_notify_stale_events_total{kind="call"}'}, $s->{stale_events}{call},
   'Prometheus: acs_notify_stale_events_total{kind="call"}');
is($prom->{'acs_notify_stale_events_total{kind="other"}'}, $s->{stale_events}{other},
   '... {kind="other"}');
is($prom->{'acs_notify_requests_total{result="stale"}'}, $s->{requests}{stale},
   'acs_notify_requests_total{result="stale"}');
is($prom->{'acs_notify_pushes_total{outcome="expired",platform="fcmv1"}'},
   $s->{pushes}{fcmv1}{expired}, 'acs_notify_pushes_total{outcome="expired"}');

$srv->stop;
my @bad = $srv->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg');

undef $t;
done_testing();
