# A failing hub is left alone, and a slow one is not sent more than it can
# take before the deadline (docs/dispatch.md, sections 5 and 7): after 8
# failing answers in a row the lane brakes and tries one push now and then
# (a probe) instead of every push and retry; a delivery that reaches a
# braked lane, or one the lane's measured rate cannot send before its
# deadline, gets 503 at once.  The Notification Hubs stand-in
# (t/lib/AcsTest/FakeNH.pm, rules by device-handle prefix) counts what
# reached it.  No timed assertion: the figures are bench/distance.sh's.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Dispatch;

my $t = AcsTest::Dispatch->new('370-dispatch-brake');
my $srv = $t->srv;
my $nh = $t->nh;
my ($dir, $port, $ca) = ($t->dir, $nh->port, $nh->ca);

# "slow" is another lane (http2=off): two connections, 300 ms a push
$srv->write_conf(http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $dir/../registry;
    acs_notify_hub main connection_string=file:$dir/nh.conn hub=acs-push
                   connect_to=127.0.0.1:$port ca_file=$ca timeout=2s;
    acs_notify_hub slow connection_string=file:$dir/nh.conn hub=acs-push
                   connect_to=127.0.0.1:$port ca_file=$ca timeout=5s
                   http2=off max_connections=2;
HTTP
        location = /eg {
            acs_notify_eventgrid hub=main;
            acs_notify_dispatch_timeout 6s;
            add_header X-Result \$acs_notify_result always;
        }
        location = /eg-slow-accepted {
            acs_notify_eventgrid hub=slow;
            acs_notify_ack accepted;
            acs_notify_dispatch_timeout 25s;
        }
        location = /eg-slow {
            acs_notify_eventgrid hub=slow;
            acs_notify_dispatch_timeout 4s;
            add_header X-Result \$acs_notify_result always;
        }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
$srv->start;

sub handles { my ($prefix, @j) = @_; return scalar grep { index($_->{handle} // '', $prefix) == 0 } @j }

# --- a hub that answers 503 to everything: a probe now and then

my $FLAP = '8:acs:flap';
$srv->register($FLAP, "d$_", platform => 'fcmv1', handle => "flap-tok-$_") for 1 .. 10;
$nh->set_rules([{ prefix => 'flap-', status => 503 }]);
my $n0 = $t->mark;
my ($st, $h) = $t->deliver('/eg', chat_for($FLAP, 4, 'flap'));
is($st, 503, '40 pushes to a hub that answers 503: 503 at the deadline');
is($h->{'x-result'}, 'unavailable:dispatch', '... as unavailable:dispatch');
my $sent = handles('flap-', $t->since($n0));
ok($sent <= 2 * 40, "the hub got $sent requests for 40 pushes in 6 s (at most 2 a push)");
ok($sent >= 9, '... the first ones and probes');
my $log = $srv->new_log;
like($log, qr/\[warn\].*Notification Hubs "main" fails \(8 answers in a row, the last: HTTP 503\), its pushes wait 250ms, then one is tried/,
     'the brake is logged with its first wait');
like($log, qr/Notification Hubs "main" fails \(\d+ answers in a row, the last: HTTP 503\), its pushes wait 1000ms/,
     '... and its wait doubles up to a second');

# a delivery while the lane is braked: 503 at once, nothing sent

my $n1 = $t->mark;
($st, $h) = $t->deliver('/eg', chat_for($FLAP, 1, 'flap-more'));
is($st, 503, 'a delivery while the hub fails: 503');
is($h->{'x-result'}, 'unavailable:hub', '... as unavailable:hub');
ok($h->{'retry-after'} && $h->{'retry-after'} >= 1, "... with Retry-After: $h->{'retry-after'}");
like($srv->new_log, qr/\[warn\].*Notification Hubs "main" fails, delivery of 10 pushes refused with 503/,
     '... logged');
ok(handles('flap-', $t->since($n1)) <= 1, '... and at most a probe reached the hub');

# the hub back: the next probe opens the lane

$nh->set_rules([]);
sleep 1.1;    # the longest wait of the brake
($st) = $t->deliver('/eg', chat_for($FLAP, 4, 'flap-back'));
is($st, 200, 'the hub back: the next delivery is sent: 200');
like($srv->new_log, qr/\[notice\].*Notification Hubs "main" answers again, its pushes go on/,
     '... its first push was the probe that opened the lane');

# --- a slow lane: 2 connections, 300 ms a push (about 7 a second)

my $SLOW = '8:acs:slow';
$srv->register($SLOW, "d$_", platform => 'fcmv1', handle => "slow-tok-$_") for 1 .. 16;
$nh->set_rules([{ prefix => 'slow-', status => 201, delay_ms => 300 }]);
($st) = $t->deliver('/eg-slow-accepted', chat_for($SLOW, 10, 'backlog'));
is($st, 202, '160 pushes for the slow lane: accepted');
sleep 2.5;    # its rate is measured while they wait

($st, $h) = $t->deliver('/eg-slow', chat_for($SLOW, 1, 'late'));
is($st, 503, 'one more delivery that its rate cannot send in the 4 s left: 503 at once');
is($h->{'x-result'}, 'unavailable:backlog', '... as unavailable:backlog');
ok($h->{'retry-after'} && $h->{'retry-after'} >= 2, "... with Retry-After: $h->{'retry-after'}");
like($srv->new_log, qr/\[warn\].*Notification Hubs "slow" answers \d+ pushes a second, \d+ wait: 16 more cannot be sent in the \d+ms left, delivery refused with 503/,
     '... logged with the rate and the backlog');

my $s = $srv->status;
my $slow = AcsTest::Server::hub_host($s, 'slow');
is($slow->{protocol}, 'h1', 'status: the slow host answers over HTTP/1.1');
ok($slow->{limit} >= 1 && $slow->{limit} <= 2, "... its limit stays under max_connections=2 ($slow->{limit})");
ok($slow->{queued} > 0, "... pushes wait for it ($slow->{queued})");
ok($slow->{in_flight} >= 1 && $slow->{in_flight} <= 2, "... $slow->{in_flight} in flight");
ok($slow->{rtt_min_us} >= 250_000, "... its least round trip is the stand-in's 300 ms ($slow->{rtt_min_us} us)");
my $main = AcsTest::Server::hub_host($s, 'main');
is($main->{protocol}, 'h1', 'the other hub: a lane of its own, HTTP/1.1 too (the stand-in offers no HTTP/2)');
ok($main->{connections_opened} >= 1, "... $main->{connections_opened} connection(s) opened");
# libcurl's idle HTTP/1.1 connections to an address serve whichever lane
# asks: a connection counts in the lane that opened it
ok($main->{connections} + $slow->{connections} >= 1, 'connections to the address are open');

$nh->set_rules([]);
done_testing();
