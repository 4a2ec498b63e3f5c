# acs_notify_status: counters for every kind of request, JSON and strict
# Prometheus text, consistent under parallel load from several workers,
# refused where the configuration denies it, surviving a reload.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Dispatch;
use AcsTest::Prom qw(parse_prometheus);

my $t = AcsTest::Dispatch->new('400-status');
my $srv = $t->srv;

$srv->write_conf(workers => 2, http => $t->hubs_conf, server => <<"SERVER");
        location = /eg {
            acs_notify_eventgrid hub=main voip_hub=voip;
            acs_notify_secret \$arg_code s3cret-value-1;
        }
        location = /eg-open { acs_notify_eventgrid hub=main voip_hub=voip; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
        location = /status { acs_notify_status; allow 127.0.0.1; deny all; }
        location = /status-denied { acs_notify_status; deny all; }
SERVER
$srv->start;

sub json_status {
    my ($st, $h, $b) = $srv->request(GET => '/status');
    is($st, 200, 'status answers 200') or return {};
    is($h->{'content-type'}, 'application/json', 'as JSON');
    return decode_json($b);
}

# the same without assertions, for polls whose number depends on timing
# (the file's number of tests stays the same from run to run)
sub quiet_status {
    my ($st, undef, $b) = $srv->request(GET => '/status');
    return $st == 200 ? (eval { decode_json($b) } // {}) : {};
}

sub prom_status {
    my ($st, $h, $b) = $srv->request(GET => '/status?format=prometheus');
    is($st, 200, 'Prometheus format answers 200');
    like($h->{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'with the Prometheus content type');
    my $m = eval { parse_prometheus($b) };
    ok($m, 'the exposition passes the strict checker') or diag "$@\n$b";
    return $m // {};
}

my $s0 = json_status();
is($s0->{requests}{dispatched}, 0, 'nothing dispatched yet');
is($s0->{registry_size}, 0, 'empty registry');
unlike(encode_json($s0), qr/c2FtcGxl|s3cret/, 'no secret in the status');

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
my $HANDLE = 'feedface' x 8;
is($srv->register($BOB, 'iphone', platform => 'apns', handle => $HANDLE), 201, 'a device registered');
is($srv->register($BOB, 'droid', platform => 'fcmv1', handle => 'droid-handle'), 201, 'another');

my $chat = fixture('eg-chat-message-received.json');
my ($st) = $t->deliver('/eg?code=s3cret-value-1', $chat);
is($st, 200, 'a chat message dispatched');
($st) = $t->deliver('/eg?code=s3cret-value-1', $chat);
is($st, 200, 'the same again (deduplicated)');
($st) = $t->deliver('/eg?code=wrong-secret-000', $chat);
is($st, 401, 'a wrong secret');
($st) = $t->deliver('/eg?code=s3cret-value-1', '[{"id":');
is($st, 400, 'bad JSON');
($st) = $srv->request(POST => '/eg?code=s3cret-value-1', fixture('eg-validation.json'),
    { 'aeg-event-type' => 'SubscriptionValidation', 'Content-Type' => 'application/json' });
is($st, 200, 'a validation handshake');
($st) = $t->deliver('/eg?code=s3cret-value-1', fixture('eg-call-started.json'));
is($st, 200, 'an event without a push');

# requests are counted in their log phase, just after the answer, by
# either worker: wait until all six are (a few ms; longer under valgrind)
sub requests_counted {
    my (undef, undef, $b) = $srv->request(GET => '/status');
    my $r = eval { decode_json($b)->{requests} } // {};
    my $n = 0;
    $n += $_ for values %$r;
    return $n;
}
for (1 .. 50) {
    last if requests_counted() >= 6;
    select undef, undef, undef, 0.1;
}
my $s = json_status();
is($s->{requests}{dispatched}, 3, 'requests: dispatched 3');
is($s->{requests}{'rejected:secret'}, 1, 'requests: rejected:secret 1');
is($s->{requests}{'rejected:json'}, 1, 'requests: rejected:json 1');
is($s->{requests}{validated}, 1, 'requests: validated 1');
is($s->{events}{ChatMessageReceived}, 2, 'events: ChatMessageReceived 2');
is($s->{events}{CallStarted}, 1, 'events: CallStarted 1');
is($s->{events}{SubscriptionValidationEvent}, 1, 'events: SubscriptionValidationEvent 1');
is($s->{pushes}{apns}{sent}, 1, 'pushes: apns sent 1');
is($s->{pushes}{fcmv1}{sent}, 1, 'pushes: fcmv1 sent 1');
is($s->{pushes}{apns}{duplicate}, 1, 'pushes: apns duplicate 1');
is($s->{dedup_hits}, 2, 'dedup hits 2');
is($s->{hubs}{main}{'2xx'}, 2, 'hub main: 2 answers 2xx');
is($s->{registrations}{PUT}{'2xx'}, 2, 'registrations: 2 PUT 2xx');
is($s->{registry_size}, 2, 'registry size 2');
is($s->{queue_depth}, 0, 'queue empty');
is($s->{in_flight}, 0, 'nothing in flight');
is($s->{delivery_latency_ms}{count}, 2, 'delivery latency observed twice');
is($s->{hub_response_ms}{count}, 2, 'hub response time observed twice');
is($s->{delivery_latency_ms}{buckets}{'+Inf'}, 2, '+Inf bucket equals the count');
# from the request's arrival on the worker's clock: seconds at most here
is($s->{delivery_latency_ms}{buckets}{'5000'}, 2, 'delivery latency within 5 s');
cmp_ok($s->{delivery_latency_ms}{sum}, '<', 10000, 'delivery latency sum within 10 s');

my $m = prom_status();
is($m->{'acs_notify_requests_total{result="dispatched"}'}, 3, 'prometheus: dispatched');
is($m->{'acs_notify_requests_total{reason="secret",result="rejected"}'}, 1, 'prometheus: rejected with reason label');
is($m->{'acs_notify_pushes_total{outcome="sent",platform="apns"}'}, 1, 'prometheus: pushes by platform and outcome');
is($m->{'acs_notify_hub_responses_total{hub="main",status="2xx"}'}, 2, 'prometheus: hub label and status class');
is($m->{'acs_notify_events_total{type="ChatMessageReceived"}'}, 2, 'prometheus: event type label');
is($m->{'acs_notify_delivery_latency_seconds_count{}'}, 2, 'prometheus: delivery latency histogram');
is($m->{'acs_notify_registry_registrations{}'}, 2, 'prometheus: registry gauge');

# a failure class moves its counters
is($srv->register('8:acs:zed', 'z', platform => 'apns', handle => '0410' . 'e' x 60), 201, 'a device the hub says is gone');
($st) = $t->deliver('/eg-open', $chat =~ s/\Q$BOB\E/8:acs:zed/gr =~ s/02272459/a2272459/r);
is($st, 200, 'delivered');
$s = json_status();
is($s->{pushes}{apns}{gone}, 1, 'pushes: apns gone 1');
is($s->{hubs}{main}{410}, 1, 'hub main: one 410');

# parallel load on two workers: every request counted once; the requests
# before are counted in the log phase, after their answer: wait until the
# counters stand still
for (1 .. 20) {
    select undef, undef, undef, 0.1;
    my $again = quiet_status();
    last if $again->{requests}{dispatched} == $s->{requests}{dispatched}
            && $again->{events}{CallStarted} == $s->{events}{CallStarted};
    $s = $again;
}
my $before = $s->{requests}{dispatched};
my $events_before = $s->{events}{CallStarted};
my @kids;
for my $c (1 .. 4) {
    my $pid = fork // die;
    if (!$pid) {
        my $bad = 0;
        for my $i (1 .. 25) {
            my ($x) = $t->deliver('/eg-open', fixture('eg-call-started.json'));
            $bad++ unless $x == 200;
            my ($y) = $srv->request(GET => '/status?format=prometheus');
            $bad++ unless $y == 200;
        }
        POSIX::_exit($bad);
    }
    push @kids, $pid;
}
my $bad = 0;
for (@kids) { waitpid $_, 0; $bad += $? >> 8 }
is($bad, 0, '100 deliveries and 100 status reads in parallel, all answered');
is(scalar(() = $srv->workers), 2, 'two workers served them');

# requests are counted in the log phase, just after their answer: wait
# until the last of them is counted
for (1 .. 20) {
    my (undef, undef, $b) = $srv->request(GET => '/status');
    last if decode_json($b)->{requests}{dispatched} - $before >= 100;
    select undef, undef, undef, 0.1;
}
$s = json_status();
is($s->{requests}{dispatched} - $before, 100, 'dispatched moved by exactly 100');
is($s->{events}{CallStarted} - $events_before, 100, 'events moved by exactly 100');
$m = prom_status();
is($m->{'acs_notify_requests_total{result="dispatched"}'}, $s->{requests}{dispatched}, 'JSON and Prometheus agree');

# refused where the configuration denies it
($st) = $srv->request(GET => '/status-denied');
is($st, 403, 'status refused by deny all');
($st) = $srv->request(POST => '/status', 'x');
is($st, 405, 'status takes GET only');

# counters survive a reload
$srv->reload;
sleep 1;
my $after = json_status();
is($after->{requests}{dispatched}, $s->{requests}{dispatched}, 'counters survive a reload');

$srv->stop;
my @crit = $srv->bad_lines;
is(join("\n", @crit), '', 'no alert, crit or emerg');

undef $t;
done_testing();
