# Connections to the hub are kept between bursts of pushes: a delivery
# fanning out to several devices opens connections in parallel (the
# stand-in speaks HTTP/1.1 only, one push per connection at a time), and
# the next deliveries reuse them instead of paying new TLS handshakes.
# libcurl's default would keep only four idle connections per transfer
# still running, closing most of them as the burst drains.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Dispatch;

my $t = AcsTest::Dispatch->new('340-dispatch-keepalive');
my $srv = $t->srv;

# one hub, with a timeout that also suits a run under valgrind (eight TLS
# handshakes at once): a timed-out push would be retried on a new connection
my ($dir, $nh) = ($t->dir, $t->nh);
$srv->write_conf(workers => 1, http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $dir/../registry;
    acs_notify_hub main connection_string=file:$dir/nh.conn hub=acs-push
                   connect_to=127.0.0.1:${\ $nh->port} ca_file=${\ $nh->ca} timeout=15s;
HTTP
        location = /eg { acs_notify_eventgrid hub=main; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
$srv->start;

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
my $N = 8;
my $ok = 0;
$ok += $srv->register($BOB, "phone-$_", platform => 'fcmv1',
                      handle => "keepalive-token-$_") == 201 for 1 .. $N;
is($ok, $N, "$N devices registered");

my $chat = fixture('eg-chat-message-received.json');
my (@bursts, %seen);
for my $i (1 .. 3) {
    (my $body = $chat) =~ s/"id":\s*"[^"]+"/"id": "keepalive-event-$i"/ or die 'no id';
    my $mark = $t->mark;
    my ($st) = $t->deliver('/eg', $body);
    is($st, 200, "delivery $i: 200");
    my @e = $t->since($mark);
    is(scalar @e, $N, "delivery $i: $N pushes");
    push @bursts, { map { $_->{conn} => 1 } @e };
    select undef, undef, undef, 0.3;    # every transfer of the burst is done
}

# each burst needs at most $N connections at once; kept connections mean
# no more than $N were ever opened (curl's default cache: 10 here)
my @first = sort { $a <=> $b } keys %{ $bursts[0] };
ok(@first >= 2, 'the first burst ran on several connections (' . scalar(@first) . ')');
my %all = map { %$_ } @bursts;
ok(keys %all <= $N, "three bursts of $N pushes on at most $N connections")
    or diag join ' | ', map { join ' ', sort { $a <=> $b } keys %$_ } @bursts;
# a later burst opens only what an earlier one did not need: libcurl 8
# holds transfers while the first connection tells its protocol (PIPEWAIT),
# so the first burst may run on one connection fewer than it has pushes
my %before = %{ $bursts[0] };
for my $i (1, 2) {
    my @new = grep { !$before{$_} } keys %{ $bursts[$i] };
    ok(@new <= $N - keys %before, 'delivery ' . ($i + 1) . ': connections of the earlier ones are used, '
                                  . scalar(@new) . ' new')
        or diag "before: @{[ sort keys %before ]}; this one: @{[ sort keys %{ $bursts[$i] } ]}";
    %before = (%before, %{ $bursts[$i] });
}

$srv->stop;
my @bad = $srv->bad_lines(qw(alert crit emerg error));
is(join("\n", @bad), '', 'no error, alert, crit or emerg');

done_testing();
