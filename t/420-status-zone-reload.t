# The status zone across reloads that change the number of hubs: reloads
# that succeed (the counters restart, nothing runs out), and one that fails
# after the zone of the new configuration was made (a port already in use):
# the master goes on with the old configuration, and a worker it starts
# later (after a crash) must use that configuration's zone, not the one the
# failed reload made and nginx freed.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep);
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Dispatch;

my $t = AcsTest::Dispatch->new('420-status-zone-reload');
my $srv = $t->srv;
my ($dir, $nh) = ($t->dir, $t->nh);

sub conf {
    my ($nhubs, $extra) = @_;
    my $hubs = join '', map {
        "    acs_notify_hub h$_ connection_string=file:$dir/nh.conn hub=acs-push"
        . " connect_to=127.0.0.1:${\ $nh->port} ca_file=${\ $nh->ca};\n"
    } 1 .. $nhubs;
    $srv->write_conf(workers => 1, http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $dir/../registry;
$hubs
HTTP
        ${\ ($extra // '')}
        location = /eg { acs_notify_eventgrid hub=h1; }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
}

sub worker_changed {
    my ($old) = @_;
    for (1 .. 200) {
        my @w = $srv->workers;
        return $w[0] if @w == 1 && $w[0] != $old;
        sleep 0.05;
    }
    return;
}

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
my $chat = fixture('eg-chat-message-received.json');
my $n = 0;
sub deliver {
    $n++;
    (my $body = $chat) =~ s/"id":\s*"[^"]+"/"id": "zone-event-$n"/ or die 'no id';
    my ($st) = $t->deliver('/eg', $body);
    return $st;
}

conf(1);
$srv->start;
is($srv->register($BOB, 'phone', platform => 'fcmv1', handle => 'zone-token'), 201, 'a device');
is(deliver(), 200, 'a push with 1 hub');

# reloads alternating between 1 and 2 hubs: each one changes the layout of
# the counters (a zone of the same size, before the fix, got one more
# block each time, until it had no room left)
my ($w) = $srv->workers;
my ($ok, $done) = (1, 0);
for my $i (1 .. 30) {
    my $k = $i % 2 ? 2 : 1;
    conf($k);
    $srv->reload;
    my $nw = worker_changed($w) or do { $ok = 0; diag "reload $i: no new worker"; last };
    $w = $nw;
    my $s = $srv->status;
    $ok = 0, diag "reload $i: status" unless $s && keys %{ $s->{hubs} } == $k;
    $ok = 0, diag "reload $i: delivery" unless deliver() == 200;
    $done++;
}
ok($ok && $done == 30, "30 reloads alternating 1 and 2 hubs: each one served, status lists its hubs ($done)");

# a reload that fails once its zones are made
my $busy = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1:0', ReuseAddr => 0)
    or die $!;
my $before = $srv->status;
ok($before, 'status before the failing reload');
conf(60, 'listen 127.0.0.1:' . $busy->sockport . ';');   # a larger zone: a new one
$srv->new_log;
$srv->reload;
sleep 1;
like($srv->new_log, qr/\[emerg\].*bind\(\) to 127\.0\.0\.1:${\ $busy->sockport} failed/,
     'the reload failed (port in use)');
my @w = $srv->workers;
is(scalar @w, 1, 'the old worker still runs');

kill 'KILL', $w[0];
my $respawned = worker_changed($w[0]);
ok($respawned, 'the master started a new worker');
is(deliver(), 200, 'the new worker pushes');
my $s = $srv->status;
ok($s, 'and answers the status');
is(scalar keys %{ $s->{hubs} // {} }, 1, 'with the hubs of the running configuration');
ok($s && $s->{requests}{dispatched} > $before->{requests}{dispatched},
   'its counters are those of the running configuration, still counting');

$srv->stop;
my @bad = grep { /\[(alert|crit)\]/ && !/exited on signal 9/ } split /\n/, $srv->whole_log;
is(join("\n", @bad), '', 'no alert or crit but the killed worker');

done_testing();
