# The dispatch engine under the traffic shapes of production: bursts that
# do not fit, a hub that refuses or hangs, throttling, redeliveries that
# race the first delivery, calls behind a chat backlog, gone handles by the
# hundred.  The Notification Hubs stand-in (t/lib/AcsTest/FakeNH.pm) is the
# witness for what reached the hub; a stock nginx sink (AcsTest::Sink)
# takes the volume tests.  Figures of speed are the benchmarks' business
# (bench/engine.sh): the times asserted here are deadlines and ordering.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Dispatch;
use AcsTest::Sink;

my $t = AcsTest::Dispatch->new('360-dispatch-engine');
my $srv = $t->srv;
my $nh = $t->nh;
my ($dir, $port, $ca) = ($t->dir, $nh->port, $nh->ca);

# one hub of 4 connections: a handle may hold one of them
$srv->write_conf(log_level => 'debug', http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $dir/../registry;
    acs_notify_hub main connection_string=file:$dir/nh.conn hub=acs-push
                   connect_to=127.0.0.1:$port ca_file=$ca max_connections=4 timeout=3s;
    acs_notify_hub down connection_string=file:$dir/nh.conn hub=acs-push
                   connect_to=127.0.0.1:1 ca_file=$ca timeout=1s;
HTTP
        location = /eg {
            acs_notify_eventgrid hub=main;
            acs_notify_dispatch_timeout 10s;
            add_header X-Result \$acs_notify_result always;
        }
        location = /eg-4s {
            acs_notify_eventgrid hub=main;
            acs_notify_dispatch_timeout 4s;
        }
        location = /eg-accepted {
            acs_notify_eventgrid hub=main;
            acs_notify_ack accepted;
            acs_notify_dispatch_timeout 4s;
        }
        location = /eg-down {
            acs_notify_eventgrid hub=down;
            acs_notify_dispatch_timeout 3s;
            client_max_body_size 4m;
            add_header X-Result \$acs_notify_result always;
        }
        location = /probe { return 200 "ok\\n"; }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
$srv->start;
my $BASE_FDS;

sub call_for {
    my ($raw_id, $id) = @_;
    my $c = fresh(fixture('eg-incoming-call.json'));
    $c =~ s/8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d/$raw_id/g;
    $c =~ s/e80026e7-e298-46ba-bc42-dab0eda92581/$id/;
    return $c;
}

sub worker_fds { my ($w) = $srv->workers; opendir my $d, "/proc/$w/fd" or return -1; return scalar(grep { /^\d+$/ } readdir $d) }
sub handles { my ($prefix, @j) = @_; return scalar grep { index($_->{handle} // '', $prefix) == 0 } @j }

# a child that asks /probe every 20 ms until killed; its file gets the
# longest wait for an answer, in ms, and the number of probes
sub prober {
    my ($file) = @_;
    my $pid = fork // die;
    return $pid if $pid;
    my ($max, $n, $stop) = (0, 0, 0);
    $SIG{TERM} = sub { $stop = 1 };
    while (!$stop) {
        my $t0 = time;
        my ($st) = $srv->request(GET => '/probe', '', {}, 10);
        my $d = (time - $t0) * 1000;
        $d = 1e6 unless $st == 200;
        $max = $d if $d > $max;
        $n++;
        sleep 0.02;
    }
    open my $fh, '>', $file or die;
    print $fh "$max $n\n";
    close $fh;
    POSIX::_exit(0);
}

sub prober_result {
    my ($pid, $file) = @_;
    kill 'TERM', $pid;
    waitpid $pid, 0;
    open my $fh, '<', $file or return (1e6, 0);
    my $l = <$fh>;
    return split ' ', $l;
}

# --- a Retry-After no timer can hold: the push gives up at once

$srv->register('8:acs:throttled', 'd1', platform => 'fcmv1', handle => 'ra429-huge');
$srv->register('8:acs:throttled2', 'd1', platform => 'fcmv1', handle => 'ra429-digits');
$nh->set_rules([
    { prefix => 'ra429-huge', status => 429, retry_after => '18446744073709551' },
    { prefix => 'ra429-digits', status => 429, retry_after => '1' . '0' x 30 },
]);
$BASE_FDS = worker_fds();
my $n0 = $t->mark;
my ($st, $h, undef, $dt) = $t->deliver('/eg-4s', chat_for('8:acs:throttled', 1, 'ra1'));
is($st, 503, 'a 429 with Retry-After 18446744073709551: 503');
ok($dt < 3, sprintf('... at once, not at the 4s deadline (%.1fs)', $dt));
is(handles('ra429-huge', $t->since($n0)), 1, '... after exactly one request to the hub');
($st, undef, undef, $dt) = $t->deliver('/eg-4s', chat_for('8:acs:throttled2', 1, 'ra2'));
is($st, 503, 'a Retry-After of 31 digits: 503');
is(handles('ra429-digits', $t->since($n0)), 1, '... after exactly one request to the hub');
like($srv->new_log, qr/push of event "ra1-1" to ra429-hu\.\.\. through "main" failed after 1 attempts: HTTP 429 throttled/,
     'the give-up is logged at error');
$nh->set_rules([]);

# --- a redelivery racing the first delivery: one push

$srv->register('8:acs:racer', 'd1', platform => 'fcmv1', handle => 'race-token-1');
$nh->set_rules([{ prefix => 'race-token', status => 201, delay_ms => 1500, times => 100 }]);
my $race = chat_for('8:acs:racer', 1, 'race');
$n0 = $t->mark;
my $first = fork // die;
if (!$first) {
    my ($s) = $t->deliver('/eg', $race);
    POSIX::_exit($s == 200 ? 0 : 1);
}
sleep 0.5;
($st, $h) = $t->deliver('/eg', $race);
is($st, 503, 'the same event again while its push is in flight: 503');
is($h->{'retry-after'}, '10', '... with Retry-After');
waitpid $first, 0;
is($? >> 8, 0, 'the first delivery: 200');
is(handles('race-token', $t->since($n0)), 1, 'exactly one push of the event to the device');
($st) = $t->deliver('/eg', $race);
is($st, 200, 'delivered once more, later: 200');
is(handles('race-token', $t->since($n0)), 1, '... and still one push');
my $log = $srv->new_log;
like($log, qr/event "race-1" is being pushed to device "d1" by another delivery, skipped/, 'the race is logged');
like($log, qr/event "race-1" already pushed to device "d1", skipped/, 'the later redelivery is a duplicate');
$nh->set_rules([]);

# --- a hung device handle does not hold every connection

$srv->register('8:acs:hung', 'd1', platform => 'fcmv1', handle => 'hang-token-1');
$srv->register('8:acs:healthy', 'd1', platform => 'fcmv1', handle => 'healthy-token-1');
$nh->set_rules([{ prefix => 'hang-token', status => 'hang' }]);
$n0 = $t->mark;
($st) = $t->deliver('/eg-accepted', chat_for('8:acs:hung', 16, 'hung'));
is($st, 202, '16 pushes to a device whose pushes hang: accepted');
$nh->wait_requests($n0 + 1, 5);
($st, undef, undef, $dt) = $t->deliver('/eg', chat_for('8:acs:healthy', 1, 'healthy'));
is($st, 200, 'a push to a healthy device meanwhile: 200');
my @j = $t->since($n0);
is(handles('healthy-token', @j), 1, '... it reached the hub');
is(handles('hang-token', @j), 1, 'the hung device holds one connection of four, its other pushes wait');
unlike($srv->new_log, qr/timed out/, 'the healthy push did not wait for the hung one to time out');
# the hung push times out (timeout=3s) on a connection that was up: the
# hub is slow, its host is not unreachable, so the lane does not pause
my $hung = '';
for (1 .. 50) {
    $hung .= $srv->new_log;
    last if $hung =~ /timed out/;
    select(undef, undef, undef, 0.1);
}
like($hung, qr/push of event "hung-\d+" .*timed out/i, 'the hung push timed out');
unlike($hung, qr/no connection to Notification Hubs "main"/, '... and did not pause the lane as if the host were down');
$nh->set_rules([]);

# --- calls overtake a chat backlog

# 160 slow chat pushes (300 ms each) on 4 connections: 12 s of backlog
my $CHATTY = '8:acs:chatty';
$srv->register($CHATTY, "d$_", platform => 'fcmv1', handle => "slowchat-$_") for 1 .. 16;
$srv->register('8:acs:callee', 'd1', platform => 'fcmv1', handle => 'callee-token-1');
$nh->set_rules([{ prefix => 'slowchat-', status => 201, delay_ms => 300, times => 1000 }]);
$n0 = $t->mark;
($st) = $t->deliver('/eg-accepted', chat_for($CHATTY, 10, 'backlog'));
is($st, 202, 'a backlog of 160 chat pushes: accepted');
$nh->wait_requests($n0 + 4, 5);
($st, undef, undef, $dt) = $t->deliver('/eg', call_for('8:acs:callee', 'call-over-backlog'));
is($st, 200, 'an incoming call behind it: 200');
@j = $t->since($n0);
my ($pos) = grep { ($j[$_]{handle} // '') eq 'callee-token-1' } 0 .. $#j;
ok(defined $pos, 'the call push reached the hub');
my $before = defined $pos ? $pos : scalar @j;
ok($before <= 12, "... after $before chat pushes of 160: the call went first");
sleep 4.5;    # the backlog's deadline: what was not started is dropped
like($srv->new_log, qr/pushes not final at the dispatch deadline: \d+ dropped/, 'the backlog left at its deadline is dropped');
$nh->set_rules([]);

# --- the hub down under the largest delivery: 40,000 pushes

my $BIG = '8:acs:big';
$srv->register($BIG, "d$_", platform => 'fcmv1', handle => "big-token-$_") for 1 .. 16;
my $big = chat_for($BIG, 2500, 'big');
$srv->new_log;
# idle keep-alive connections to "main" stay open: counted before
my $idle = $srv->status->{hub_connections};
my $fds = worker_fds();
my $pfile = $srv->root . '/probe.out';
my $prober = prober($pfile);
($st, $h, undef, $dt) = $t->deliver('/eg-down', $big);
my ($max, $probes) = prober_result($prober, $pfile);
is($st, 503, sprintf('40,000 pushes (%d kB) to a hub that refuses connections: 503', length($big) / 1024));
is($h->{'retry-after'}, '10', '... with Retry-After');
is($h->{'x-result'}, 'unavailable:dispatch', '... $acs_notify_result says why');
ok($dt >= 2.9 && $dt < 4, sprintf('... at the 3s deadline (%.2fs)', $dt));
ok($probes >= 20, "the worker answered $probes probes meanwhile");
ok($max < 1000, sprintf('... each within a second (the longest: %.0f ms; bench/engine.sh measures it)', $max));
sleep 0.3;
my $s = $srv->status;
is($s->{queue_depth}, 0, 'the queue is empty again');
is($s->{in_flight}, 0, 'nothing in flight');
my ($down) = grep { $_->{hubs} eq 'down' } @{ $s->{hub_hosts} };
is($down->{connections}, 0, 'no socket to the hub left open');
is($s->{hub_connections}, $idle, "... $idle idle ones to the other hub, as before");
is(worker_fds(), $fds, "the worker has as many descriptors open as before the delivery ($fds)");
ok($fds <= $BASE_FDS + 2 * $idle, "... those of the idle connections more than before any push ($BASE_FDS)");
$log = $srv->new_log;
like($log, qr/no connection to Notification Hubs "down" \(1 in a row\), its pushes wait 250ms/, 'the refused hub pauses its pushes');
like($log, qr/40000 of 40000 pushes not final at the dispatch deadline/, 'the deadline is logged once for the delivery');
unlike($log, qr/\[alert\]|\[crit\]/, 'no alert, no crit');
unlike($log, qr/reused before its removal|Bad file descriptor/, 'no socket lost track of');

# --- a thousand gone handles: one registry write per turn

my @gone_users = map { "8:acs:gone-$_" } 1 .. 13;
for my $u (0 .. $#gone_users) {
    $srv->register($gone_users[$u], "d$_", platform => 'apns', handle => sprintf('0410%02d%02d', $u, $_) . 'f' x 56) for 1 .. 16;
}
my $gone = '[' . join(',', map {
    eg_event(id => qq{"gone-ev-$_"}, data => qq({"messageBody":"bye","threadId":"19:t\@thread.v2","recipientCommunicationIdentifier":{"rawId":"$gone_users[$_]"}}))
} 0 .. $#gone_users) . ']';
$n0 = $t->mark;
($st) = $t->deliver('/eg', $gone);
is($st, 200, '208 pushes NH answers 410: 200 (gone is final)');
my @x = $t->since($n0);
is(scalar @x, 208, '208 requests to the hub');
sleep 0.3;
my $lists = 0;
for my $u (@gone_users) {
    my $path = '/acs/users/' . AcsTest::Server::uri_escape($u) . '/devices';
    my (undef, undef, $b) = $srv->request(GET => $path, '',
        { map { /^([^:]+): (.*)$/ } split /\n/, signed_headers('GET', $path, '') });
    $lists++ if $b eq '{"value":[]}';
}
is($lists, 13, 'every gone registration was removed');
$log = $srv->new_log;
my $removed = 0;
my $writes = 0;
while ($log =~ /acs_notify_registry: (\d+) gone handles, (\d+) registrations removed/g) {
    $writes++;
    $removed += $2;
}
is($removed, 208, 'the registry removed 208 registrations');
ok($writes >= 1 && $writes < 208, "... in $writes write transactions, one per turn of the event loop that had some");

$srv->stop;
my @bad = $srv->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg in the error log');

# --- a delivery of 5,001 pushes through a queue of 1,000

my ($sink, $tls) = AcsTest::Sink::start('360-sink');
my $big2 = AcsTest::Server->new('360-queue');
my $root = $big2->root;
$big2->write_conf(http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $root/registry;
    acs_notify_queue 1000;
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
$big2->start;
$big2->register('8:acs:many', "d$_", platform => 'fcmv1', handle => "q-token-$_") for 1 .. 3;
my $kid = fork // die;
if (!$kid) {
    my ($s) = $big2->request(POST => '/eg', chat_for('8:acs:many', 1667, 'q'),
                             { %AcsTest::Dispatch::EG }, 60);
    POSIX::_exit($s == 200 ? 0 : 1);
}
my $deepest = 0;
while (waitpid($kid, POSIX::WNOHANG()) == 0) {
    my (undef, undef, $b) = $big2->request(GET => '/status');
    my $q = eval { decode_json($b)->{queue_depth} } // 0;
    $deepest = $q if $q > $deepest;
    sleep 0.01;
}
is($? >> 8, 0, 'a delivery of 5,001 pushes through acs_notify_queue 1000: 200');
ok($deepest <= 1000, "the queue never held more than 1000 (deepest seen: $deepest)");
my (undef, undef, $sb) = $big2->request(GET => '/status');
like($sb, qr/"fcmv1":\{"sent":5001,/, '5001 pushes sent');
like($big2->whole_log, qr/a delivery of 5001 pushes, more than acs_notify_queue 1000, streams into the queue/,
     'the oversize delivery is logged');
$big2->stop;
$sink->stop;
my @lines = AcsTest::Sink::pushes($sink);
is(scalar @lines, 5001, 'the sink got 5001 pushes');
@bad = $big2->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg');

undef $t;
done_testing();
