# The status page after a worker crash (docs/directives.md,
# acs_notify_status): gauges are kept per worker, in a slot naming its pid,
# and summed over the workers alive, so the share of a worker killed with
# pushes queued and in flight leaves the page at once, and the worker that
# replaces it starts from zero; counters keep their totals.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep);
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Dispatch;

my $t = AcsTest::Dispatch->new('425-status-gauges');
my $srv = $t->srv;
my $nh = $t->nh;

$srv->write_conf(http => $t->hubs_conf, server => <<"SERVER");
        location = /eg-accepted {
            acs_notify_eventgrid hub=main;
            acs_notify_ack accepted;
        }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
$srv->start;


my $U = '8:acs:gauges';
$srv->register($U, "d$_", platform => 'fcmv1', handle => "gauge-hang-$_") for 1 .. 8;
$nh->set_rules([{ prefix => 'gauge-hang-', status => 'hang' }]);

my $events = '[' . join(',', map {
    eg_event(id => qq{"gauge-$_"}, data => qq({"messageBody":"hi","threadId":"19:t\@thread.v2","recipientCommunicationIdentifier":{"rawId":"$U"}}))
} 1 .. 4) . ']';
my ($st) = $t->deliver('/eg-accepted', $events);
is($st, 202, '32 pushes to a hub that hangs: accepted');
$nh->wait_requests(1, 5);

my $s;
for (1 .. 50) { $s = $srv->status; last if $s->{in_flight} > 0; sleep 0.1 }
is($s->{queue_depth}, 32, 'the page shows 32 pushes not final');
ok($s->{in_flight} >= 1, "... $s->{in_flight} of them in flight");
ok($s->{hub_connections} >= 1, "... on $s->{hub_connections} connection(s)");
my $accepted = $s->{requests}{accepted};

my ($w) = $srv->workers;
kill 'KILL', $w;
my @new;
for (1 .. 100) { @new = grep { $_ != $w } $srv->workers; last if @new; sleep 0.05 }
ok(@new, "the worker killed, another started ($new[0])");

$s = $srv->status;
is($s->{queue_depth}, 0, "the dead worker's pushes are gone from queue_depth");
is($s->{in_flight}, 0, '... and from in_flight');
is($s->{hub_connections}, 0, '... and from hub_connections');
my ($main) = grep { $_->{hubs} eq 'main' } @{ $s->{hub_hosts} };
is($main->{in_flight} // 0, 0, '... and from the hub host\'s in_flight');
is($s->{requests}{accepted}, $accepted, 'counters keep their totals');

$nh->set_rules([]);
$srv->stop;
done_testing();
