# Concurrency that follows the hub (docs/dispatch.md, section 7): against a
# Notification Hubs stand-in that answers at a distance
# (t/lib/distant-hub.mjs, via AcsTest::DistantHub), the module's defaults
# use HTTP/2 when the hub offers it and grow the pushes in flight past
# their start, fall back to HTTP/1.1 on more connections when it does not,
# keep their connections (no GOAWAY for libcurl's resets of closed
# streams), settle under a hub that throttles, and hold to max_connections.
# The stand-in counts what it got; no timed assertion (the figures are
# bench/distance.sh's).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Server;
use AcsTest::DistantHub;

my $h2 = AcsTest::DistantHub->start(name => '372-hub-h2', delay => 150);
my $h1 = AcsTest::DistantHub->start(name => '372-hub-h1', delay => 100, h1 => 1,
                                   address => '127.0.0.2');
my $h2b = AcsTest::DistantHub->start(name => '372-hub-one', address => '127.0.0.3');
my $srv = AcsTest::Server->new('372-dispatch-distance');
my $root = $srv->root;

# the defaults: no max_connections, no http2 (but "pinned": a ceiling of 2)
$srv->write_conf(http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $root/registry max_devices=100;
    acs_notify_hub far ${\ $h2->hub_conf};
    acs_notify_hub old ${\ $h1->hub_conf};
    acs_notify_hub pinned ${\ $h1->hub_conf} max_connections=2 http2=off;
    acs_notify_hub one ${\ $h2b->hub_conf} max_connections=1;
HTTP
        location = /eg-far { acs_notify_eventgrid hub=far; }
        location = /eg-old { acs_notify_eventgrid hub=old; }
        location = /eg-pinned { acs_notify_eventgrid hub=pinned; }
        location = /eg-one { acs_notify_eventgrid hub=one; }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
$srv->start;

# 100 users with 3 Android phones each
my @users = map { sprintf '8:acs:distance-u%03d', $_ } 1 .. 100;
my $ok = 0;
for my $u (@users) {
    for my $d (1 .. 3) {
        $ok += ($srv->register($u, "d$d", platform => 'fcmv1',
                               handle => "tok-$u-$d" =~ s/[^A-Za-z0-9-]/-/gr) == 201);
    }
}
is($ok, 300, '300 devices registered');

my $n = 0;
sub chat {
    return '[' . join(',', map {
        $n++;
        eg_event(id => qq{"dist-$n"}, data => qq({"messageBody":"hi","threadId":"19:t\@thread.v2","senderDisplayName":"A","recipientCommunicationIdentifier":{"rawId":"$_"}}))
    } @_) . ']';
}

sub deliver {
    my ($path, $body) = @_;
    my ($st) = $srv->request(POST => $path, $body,
        { 'aeg-event-type' => 'Notification', 'Content-Type' => 'application/json' });
    return $st;
}


# --- HTTP/2, 150 ms away: 300 pushes in one delivery

is(deliver('/eg-far', chat(@users)), 200, '300 pushes to a hub 150 ms away: 200');
my $st = $h2->stats;
is($st->{by_status}{201}, 300, 'the hub accepted 300 pushes');
is($st->{by_protocol}{h2}, 300, '... every one over HTTP/2, the default');
ok($st->{max_in_flight} > 8, "... up to $st->{max_in_flight} in flight at once: more than the 8 a lane starts with");
ok($st->{connections}{opened} <= 3, "... on $st->{connections}{opened} connection(s) (100 streams each)");
my $far = AcsTest::Server::hub_host($srv->status, 'far');
is($far->{protocol}, 'h2', 'status: the host answers over HTTP/2');
ok($far->{rtt_min_us} >= 140_000 && $far->{rtt_min_us} < 1_000_000, "... least round trip $far->{rtt_min_us} us: the hub's 150 ms");
ok($far->{limit} > 8, "... its limit grew to $far->{limit}");
is($far->{in_flight}, 0, '... nothing in flight once answered');

# --- HTTP/1.1 only: more connections, one push each

is(deliver('/eg-old', chat(@users[0 .. 39])), 200, '120 pushes to a hub that offers HTTP/1.1 only: 200');
$st = $h1->stats;
is($st->{by_status}{201}, 120, 'the hub accepted 120 pushes');
is($st->{by_protocol}{h1}, 120, '... over HTTP/1.1, as it offers nothing else');
ok($st->{connections}{max_open} > 8, "... on up to $st->{connections}{max_open} connections at once: one a push in flight");
is(AcsTest::Server::hub_host($srv->status, 'old')->{protocol}, 'h1', 'status: the host answers over HTTP/1.1');

# --- max_connections is a ceiling

$h1->reset;
is(deliver('/eg-pinned', chat(@users[40 .. 59])), 200, '60 pushes through max_connections=2: 200');
$st = $h1->stats;
is($st->{by_status}{201}, 60, 'the hub accepted 60 pushes');
ok($st->{max_in_flight} <= 2, "... never more than 2 in flight ($st->{max_in_flight})");
my $pinned = AcsTest::Server::hub_host($srv->status, 'pinned');
ok($pinned->{limit} <= 2, "status: the pinned host's limit is $pinned->{limit}");

# --- connections stay: 3,000 pushes, no GOAWAY for libcurl's resets

$h2->mode(delay => 0);
deliver('/eg-far', chat(@users)) for 1 .. 2;
$h2->reset;
my $all = 0;
for my $round (1 .. 10) {
    $all += (deliver('/eg-far', chat(@users)) == 200);
}
is($all, 10, '3,000 more pushes in 10 deliveries: 200 each');
$st = $h2->stats;
is($st->{by_status}{201}, 3000, 'the hub accepted 3,000 pushes');
my $c = $st->{connections};
ok($c->{opened} <= $c->{max_open}, "connections opened while sending ($c->{opened}) <= the most open at once ($c->{max_open})");
is($c->{open}, $c->{max_open}, "... and none closed ($c->{open} open)");

# the hub's HTTP/2 library (nghttp2, as in Node.js) closes a connection
# after about 1,000 stream resets received in a burst: libcurl 7.88 sent
# one per push (docs/dispatch.md, section 7, "libcurl's resets")
$all = 0;
for my $round (1 .. 10) {
    $all += (deliver('/eg-one', chat(@users)) == 200);
}
is($all, 10, '3,000 pushes on one connection (max_connections=1): 200 each');
$st = $h2b->stats;
is($st->{by_status}{201}, 3000, 'the hub accepted 3,000 pushes');
is($st->{connections}{opened}, 1, '... on one connection, never closed: no GOAWAY for resets of closed streams');
# --- a hub that throttles past 20 in flight (40 ms away)

$h2->mode(delay => 40, throttle => 20);

# the lane comes from 0 ms with a limit grown past 20: one delivery to
# learn the hub's ceiling (its first answers are 429s), then the count
is(deliver('/eg-far', chat(@users)), 200, 'a first delivery to the throttling hub: 200');
my $first429 = $h2->stats->{by_status}{429} // 0;
ok($first429 > 0, "the hub throttled ($first429 answers 429 to it)");
$h2->reset;
$all = 0;
for my $round (1 .. 4) {
    $all += (deliver('/eg-far', chat(@users)) == 200);
}
is($all, 4, '1,200 pushes to a hub that throttles past 20 in flight: 200 each');
$st = $h2->stats;
is($st->{by_status}{201}, 1200, 'every push accepted in the end');
my $c429 = $st->{by_status}{429} // 0;
ok($c429 <= 120, "... 429s at most 10% of the pushes ($c429): the lane settled under the hub's ceiling");
ok($st->{max_in_flight} <= 40, "... at most $st->{max_in_flight} in flight");
$far = AcsTest::Server::hub_host($srv->status, 'far');
ok($far->{limit} <= 40, "status: the limit settled at $far->{limit}");
ok($far->{throttled} >= $c429, "... and counts the 429s ($far->{throttled})");

# --- the Prometheus text says the same

my (undef, undef, $prom) = $srv->request(GET => '/status?format=prometheus');
like($prom, qr/^# TYPE acs_notify_hub_host_limit gauge$/m, 'Prometheus: acs_notify_hub_host_limit');
like($prom, qr/^acs_notify_hub_host_http_version\{host="acs-test-ns\.servicebus\.windows\.net",hubs="far"\} 2$/m,
     '... the HTTP version of each host');
like($prom, qr/^acs_notify_hub_host_throttled_total\{host="[^"]+",hubs="far"\} $far->{throttled}$/m,
     '... its 429s');
like($prom, qr/^acs_notify_hub_host_rtt_seconds\{host="[^"]+",hubs="far",stat="min"\} 0\.\d{6}$/m,
     '... its least round trip in seconds');

$srv->stop;
my @bad = $srv->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg');

done_testing();
