# Every push can be traced (acs_notify_trace): the journal's entries for a
# chat message, a call, a push refused (400), one gone (410), one retried
# (503 then 201), a duplicate, a stale call and an expired one, each with
# what the hub answered (TrackingId, x-ms-correlation-request-id, the
# notification id of Location) as the stand-in's journal shows it; the
# queries by user and by event, their errors; phone numbers masked; the
# journal's memory bound by its zone under many pushes.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Dispatch;
use AcsTest::Sink;

my $t = AcsTest::Dispatch->new('385-trace');
my $srv = $t->srv;
my $nh = $t->nh;
my ($dir, $port, $ca) = ($t->dir, $nh->port, $nh->ca);

$srv->write_conf(http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $dir/../registry;
    acs_notify_trace zone=acs_trace:1m;
    acs_notify_hub main connection_string=file:$dir/nh.conn hub=acs-push
                   connect_to=127.0.0.1:$port ca_file=$ca timeout=2s;
    acs_notify_hub voip connection_string=file:$dir/nh.conn hub=acs-voip
                   connect_to=127.0.0.1:$port ca_file=$ca timeout=2s;
HTTP
        location = /eg {
            acs_notify_eventgrid hub=main voip_hub=voip;
            acs_notify_call_ttl 60s;
            acs_notify_dispatch_timeout 8s;
        }
        location = /eg-short {
            acs_notify_eventgrid hub=main voip_hub=voip;
            acs_notify_call_ttl 1s;
            acs_notify_dispatch_timeout 8s;
        }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
$srv->start;

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
my ($APNS_BOB, $VOIP_BOB, $FCM_BOB) = ('b0b0' x 16, 'b0b1' x 16, 'bob-fcm-token');
$srv->register($BOB, 'iphone', platform => 'apns', handle => $APNS_BOB);
$srv->register($BOB, 'iphone-voip', platform => 'apns-voip', handle => $VOIP_BOB);
$srv->register($BOB, 'pixel', platform => 'fcmv1', handle => $FCM_BOB);

sub trace {
    my ($query) = @_;
    my ($st, $h, $b) = $srv->request(GET => "/status?$query");
    my $j = eval { decode_json($b) };
    return ($st, $j, $h, $b);
}

sub enc { AcsTest::Server::uri_escape($_[0]) }

sub event_of {
    my ($fixture, %o) = @_;
    my $e = fixture($fixture);
    $e =~ s/"id": "[^"]*"/"id": "$o{id}"/ or die;
    $e =~ s/\Q$BOB\E/$o{to}/g if $o{to};
    return fresh($e, $o{age} // 0);
}

# --- a chat message and a call: sent, with the hub's ids

my $m = $t->mark;
my ($st) = $t->deliver('/eg', event_of('eg-chat-message-received.json', id => 'chat-1'));
is($st, 200, 'a chat message delivered');
my @j = $t->since($m);
$m = $t->mark;
($st) = $t->deliver('/eg', event_of('eg-incoming-call.json', id => 'call-1', age => 3));
is($st, 200, 'a call delivered');
push @j, $t->since($m);

my ($s, $tr) = trace('trace&user=' . enc($BOB));
is($s, 200, '?trace&user=: 200');
ok($tr && ref $tr->{trace} eq 'ARRAY', '... {"trace":[...]}') or diag explain $tr;
my @e = @{ $tr->{trace} // [] };
is(scalar @e, 4, '... four entries: two chat pushes, the VoIP push, the Android call push');
is_deeply([map { $_->{event} } @e], ['call-1', 'call-1', 'chat-1', 'chat-1'], '... newest first');

my %nh = map { ($_->{handle} . ' ' . ($_->{json}{acs}{eventId} // $_->{json}{message}{data}{eventId}
                                       // $_->{json}{data}{eventId})) => $_ } @j;
my ($voip) = grep { $_->{device} eq 'iphone-voip' } @e;
ok($voip, 'the VoIP push is traced') or diag explain \@e;
is($voip->{outcome}, 'sent', '... sent');
is($voip->{status}, 201, '... 201');
is($voip->{platform}, 'apns-voip', '... apns-voip');
is($voip->{hub}, 'voip', '... through the VoIP hub');
is($voip->{type}, 'IncomingCall', '... an IncomingCall');
is($voip->{user}, $BOB, '... to Bob, by his raw id');
is($voip->{handle}, 'b0b1b0b1', '... the handle by its first 8 characters');
is($voip->{attempts}, 1, '... one attempt');
ok($voip->{age_ms} >= 3000 && $voip->{age_ms} < 60000, "... the event's age on arrival ($voip->{age_ms}ms)");
ok(defined $voip->{queued_ms} && defined $voip->{hub_ms}, '... time queued and the hub\'s round trip');
like($voip->{time} // '', qr/^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/, '... the time of the outcome');
my ($vj) = grep { $_->{handle} eq $VOIP_BOB } @j;
is($voip->{tracking_id}, $vj->{tracking_id}, '... the TrackingId the hub answered');
is($voip->{correlation_id}, $vj->{correlation_id}, '... its x-ms-correlation-request-id');
is($voip->{notification_id}, $vj->{notification_id}, '... and the notification id of its Location');

my ($chat_apns) = grep { $_->{event} eq 'chat-1' && $_->{device} eq 'iphone' } @e;
my ($cj) = grep { $_->{handle} eq $APNS_BOB } @j;
is($chat_apns->{outcome}, 'sent', 'the chat alert: sent');
is($chat_apns->{tracking_id}, $cj->{tracking_id}, '... with its TrackingId');
is($chat_apns->{type}, 'ChatMessageReceived', '... a ChatMessageReceived');

($s, $tr) = trace('trace&event=call-1');
is($s, 200, '?trace&event=: 200');
is(scalar @{ $tr->{trace} }, 2, '... the event\'s two pushes');
ok(!grep({ $_->{event} ne 'call-1' } @{ $tr->{trace} }), '... only them');

# --- refused, gone, retried

my $CAROL = '8:acs:carol';
$srv->register($CAROL, 'bad', platform => 'fcmv1', handle => '0400-refused');
$srv->register($CAROL, 'old', platform => 'fcmv1', handle => '0410-gone');
$srv->register($CAROL, 'flaky', platform => 'fcmv1', handle => '05031-flaky');
$nh->reset_counters;
$m = $t->mark;
($st) = $t->deliver('/eg', event_of('eg-chat-message-received.json', id => 'chat-carol', to => $CAROL));
is($st, 200, 'a chat message to Carol\'s three devices: 200');
@j = $t->since($m);
($s, $tr) = trace('trace&user=' . enc($CAROL));
my %by = map { $_->{device} => $_ } @{ $tr->{trace} };
my ($bad_j) = grep { $_->{handle} eq '0400-refused' } @j;
is($by{bad}{outcome}, 'rejected', 'a push refused with 400: rejected');
is($by{bad}{status}, 400, '... status 400');
is($by{bad}{tracking_id}, $bad_j->{tracking_id}, '... with the TrackingId of the refusal');
is($by{old}{outcome}, 'gone', 'a push answered 410: gone');
is($by{old}{status}, 410, '... status 410');
my @flaky = grep { $_->{handle} eq '05031-flaky' } @j;
is($by{flaky}{outcome}, 'sent', 'a push answered 503, then 201: sent');
is($by{flaky}{attempts}, 2, '... after 2 attempts');
is($by{flaky}{status}, 201, '... the last answer\'s status');
is($by{flaky}{tracking_id}, $flaky[-1]{tracking_id}, '... and its TrackingId');

# --- a duplicate, a stale call, an expired call

$t->deliver('/eg', event_of('eg-chat-message-received.json', id => 'chat-1'));
($s, $tr) = trace('trace&event=chat-1');
my @dup = grep { $_->{outcome} eq 'duplicate' } @{ $tr->{trace} };
is(scalar @dup, 2, 'a redelivery: two "duplicate" entries (the devices already reached)');

$t->deliver('/eg', event_of('eg-incoming-call.json', id => 'call-old', age => 600));
($s, $tr) = trace('trace&event=call-old');
is(scalar @{ $tr->{trace} }, 1, 'a stale call: one entry');
is($tr->{trace}[0]{outcome}, 'stale', '... stale');
ok($tr->{trace}[0]{age_ms} >= 600000, "... its age ($tr->{trace}[0]{age_ms}ms)");
ok(!exists $tr->{trace}[0]{device}, '... no device');
is($tr->{trace}[0]{user}, $BOB, '... the user');

my $DAVE = '8:acs:dave';
$srv->register($DAVE, 'd1', platform => 'fcmv1', handle => 'dave-503');
$nh->set_rules([{ prefix => 'dave-503', status => 503 }]);
$t->deliver('/eg-short', event_of('eg-incoming-call.json', id => 'call-expired', to => $DAVE));
$nh->set_rules([]);
($s, $tr) = trace('trace&user=' . enc($DAVE));
is($tr->{trace}[0]{outcome}, 'expired', 'a call whose hub answered 503 past its ring time: expired');
is($tr->{trace}[0]{status}, 503, '... its last answer was 503');

# --- phone numbers are masked but their last 4 digits

my $PHONE = '4:+14255550123';
$srv->register($PHONE, 'desk', platform => 'fcmv1', handle => 'desk-token');
my $pstn = event_of('eg-incoming-call.json', id => 'call-pstn');
$pstn =~ s/"to": \{.*?\n      \},/"to": {"kind": "phoneNumber", "phoneNumber": {"value": "+14255550123"}},/s or die;
($st) = $t->deliver('/eg', $pstn);
is($st, 200, 'a call to a phone number');
($s, $tr) = trace('trace&user=' . enc($PHONE));
is(scalar @{ $tr->{trace} }, 1, '?trace&user=4%3A%2B14255550123 finds it');
is($tr->{trace}[0]{user}, '4:+*******0123', '... the number masked but its last 4 digits');
unlike(encode_json($tr), qr/4255550/, '... nowhere whole');
($s, $tr) = trace('trace&user=4:+14255550123');
is(scalar @{ $tr->{trace} }, 1, '... a "+" not encoded is a "+", not a space');
($s, $tr) = trace('trace&user=' . enc('4:+19995550123'));
is(scalar @{ $tr->{trace} }, 0, '... another number with the same last 4 digits finds nothing');

# --- unknown user, query errors

($s, $tr) = trace('trace&user=' . enc('8:acs:nobody'));
is($s, 200, 'an unknown user: 200');
is_deeply($tr, { trace => [] }, '... an empty list');

for my $bad (['trace', 'neither user= nor event='],
             ['trace&user=', 'an empty user='],
             ['trace&user=a&event=b', 'both user= and event='],
             ['trace&user=a&user=b', 'two user='],
             ['trace&user=a&limit=3', 'an unknown parameter'],
             ['trace=1&user=a', 'trace= with a value'],
             ['trace&user=%zz', 'a bad percent-encoding'],
             ['trace&user=a%0Ab', 'a control character'],
             ['trace&event=' . ('x' x 1100), 'a value over 1024 bytes']) {
    my ($code, $j, $h, $b) = trace($bad->[0]);
    is($code, 400, "$bad->[1]: 400");
    is($j && $j->{error}{code}, 'trace_query', '... the module\'s JSON error body') or diag $b;
}
like($srv->new_log, qr/acs_notify: trace query refused 400 trace_query: /, 'a refused query is logged');

my ($code, undef, undef, $body) = trace('format=prometheus');
is($code, 200, 'the counters still answer beside the trace');

# --- a reload keeps the journal (the zone of the old cycle goes on)

my ($w0) = $srv->workers;
$srv->reload;
my $w1;
for (1 .. 200) {
    my @w = $srv->workers;
    if (@w == 1 && $w[0] != $w0) { $w1 = $w[0]; last }
    sleep 0.05;
}
ok($w1, 'reloaded: a new worker');
($s, $tr) = trace('trace&event=call-1');
is(scalar @{ $tr->{trace} // [] }, 2, '... which still finds the pushes of before the reload');

$srv->stop;
my @bad = $srv->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg');

# --- the journal's memory is its zone: a small zone under many pushes

my ($sink, $tls) = AcsTest::Sink::start('380-sink');
my $big = AcsTest::Server->new('380-many');
my $root = $big->root;
$big->write_conf(http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $root/registry;
    acs_notify_trace zone=small:64k;
    acs_notify_hub main "connection_string=$AcsTest::Sink::CONNECTION_STRING" hub=acs-push
                   connect_to=127.0.0.1:${\ $sink->port} ca_file=$tls->{ca};
HTTP
        location = /eg { acs_notify_eventgrid; client_max_body_size 2m; }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
$big->start;
$big->register('8:acs:many', 'd1', platform => 'fcmv1', handle => 'many-token');
my $N = 0;
my @kept;
for my $batch (1 .. 20) {
    my $body = '[' . join(',', map {
        eg_event(id => qq{"ev-$batch-$_"}, eventTime => '"' . rfc3339() . '"',
                 data => q({"messageBody":"hi","threadId":"19:t@thread.v2","recipientCommunicationIdentifier":{"rawId":"8:acs:many"}}))
    } 1 .. 250) . ']';
    my ($code) = $big->request(POST => '/eg', $body, { %AcsTest::Dispatch::EG });
    $N += 250 if $code == 200;
    if ($batch == 10 || $batch == 20) {
        my (undef, undef, $b) = $big->request(GET => '/status?trace&user=' . enc('8:acs:many'));
        push @kept, decode_json($b)->{trace};
    }
}
is($N, 5000, '5000 pushes sent, each traced');

my ($half, $all) = @kept;
ok(@$all > 16 && @$all < 500, scalar(@$all) . ' entries kept by a 64k zone');
is(scalar @$half, scalar @$all, '... as many after 2500 pushes as after 5000: the journal does not grow');
my %seen;
ok(!grep({ $_->{event} !~ /^ev-20-\d+\z/ || $seen{ $_->{event} }++ } @$all),
   '... all of them pushes of the last 250 events, each once: the oldest went first');
my @times = map { $_->{time} } @$all;
is_deeply(\@times, [sort { $b cmp $a } @times], '... newest first');
my (undef, undef, $ob) = $big->request(GET => '/status?trace&event=ev-1-1');
is_deeply(decode_json($ob), { trace => [] }, '... the oldest forgotten');
unlike($big->whole_log, qr/ngx_slab_alloc\(\) failed|no memory/, 'no allocation failed in the zone');

$big->stop;
$sink->stop;
@bad = $big->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg');

undef $t;
done_testing();
