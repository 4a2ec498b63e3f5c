# De-duplication claims and the workers that hold them (docs/dispatch.md,
# section 5): a push being made is claimed in the shared zone by its
# worker; a redelivery of the event meanwhile gets 503.  When the worker
# dies (kill -9) its claims go with it: the replacement the master starts
# releases them, and a lookup that meets the claim of a worker that no
# longer exists takes it over, so Event Grid's next try is pushed at once
# instead of being refused until the claim expires.  An old worker of a
# reload that is still finishing its pushes keeps its claims.
#
# The Notification Hubs stand-in hangs the first push to the device (a
# rule), and answers the next one.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep);
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Dispatch;

my $t = AcsTest::Dispatch->new('380-dedup-workers');
my $srv = $t->srv;
my $nh = $t->nh;
my ($dir, $port, $ca) = ($t->dir, $nh->port, $nh->ca);

# a hub whose timeout outlasts the test: the hung push stays claimed
$srv->write_conf(workers => 1, http => $t->hubs_conf . <<"HTTP", server => <<"SERVER");
    acs_notify_hub slow connection_string=file:$dir/nh.conn hub=acs-push connect_to=127.0.0.1:$port ca_file=$ca timeout=60s;
HTTP
        location = /eg {
            acs_notify_eventgrid hub=slow;
            acs_notify_dispatch_timeout 25s;
            add_header X-Result \$acs_notify_result always;
        }
        location = /pid { return 200 \$pid; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
my $HANDLE = 'abc1' x 16;
my $chat = fixture('eg-chat-message-received.json');

sub event { my ($id) = @_; return $chat =~ s/02272459-badb/$id/r }

# a delivery whose answer nobody waits for: its socket, kept open
sub deliver_async {
    my ($body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $srv->port)
        or die "connect: $!";
    print $s "POST /eg HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "aeg-event-type: Notification\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body";
    return $s;
}

# the hung push reached the stand-in
sub wait_hang {
    my ($n0) = @_;
    for (1 .. 400) {
        return 1 if grep { $_->{handle} eq $HANDLE && !$_->{status} } $t->since($n0);
        sleep 0.025;
    }
    return 0;
}

sub pushed_since {
    my ($n0) = @_;
    return scalar grep { $_->{handle} eq $HANDLE && $_->{status} == 201 } $t->since($n0);
}

# a worker other than those given, once it answers requests
sub new_worker {
    my (@old) = @_;
    my %old = map { $_ => 1 } @old;
    my $seen = 0;
    for (1 .. 400) {
        my (undef, undef, $pid) = $srv->request(GET => '/pid');
        # the same new pid three times in a row: the old ones accept no more
        $seen = ($pid =~ /^\d+$/ && !$old{$pid}) ? $seen + 1 : 0;
        return $pid if $seen == 3;
        sleep 0.025;
    }
    return;
}

# reaped by the master, not only dead: the module asks kill(pid, 0), and a
# zombie answers it (a claim of a zombie holds until the master reaps it;
# with the test as the machine's only load, a few milliseconds, on a busy
# one once long enough for the redelivery to find the claim held)
sub gone {
    my ($pid) = @_;
    for (1 .. 400) {
        return 1 unless kill 0, $pid;
        sleep 0.025;
    }
    return 0;
}

$srv->start;
is($srv->register($BOB, 'iphone', platform => 'apns', handle => $HANDLE), 201,
   'Bob registers an iPhone');

# --- a worker killed while its push hangs

$nh->set_rules([{ prefix => $HANDLE, status => 'hang', times => 1 }]);
my $n0 = $t->mark;
my ($w1) = $srv->workers;
my $first = deliver_async(event('a2272459-badb'));
ok(wait_hang($n0), 'the push of the first delivery hangs at the hub');

my ($st, $h) = $t->deliver('/eg', event('a2272459-badb'));
is($st, 503, 'a redelivery while it hangs: 503, the push is claimed');
is($h->{'x-result'}, 'unavailable:dispatch', '... by another delivery');
like($srv->new_log, qr/is being pushed to device "iphone" by another delivery/,
     '... as the log says');

kill 'KILL', $w1;
ok(gone($w1), 'the worker holding the claim is killed');
my $w2 = new_worker($w1);
ok($w2, 'the master started a replacement');

$n0 = $t->mark;
($st, $h) = $t->deliver('/eg', event('a2272459-badb'));
is($st, 200, "the redelivery after the crash is pushed at once: 200");
is($h->{'x-result'}, 'dispatched', '... dispatched');
is(pushed_since($n0), 1, '... the push reached the hub');
like($srv->new_log,
     qr/\[notice\].*acs_notify_dedup: 1 claims of pushes by worker processes that are gone released/,
     'the replacement released the dead worker\'s claim when it started');

# --- a reload: the old worker finishing its push keeps its claim

$nh->set_rules([{ prefix => $HANDLE, status => 'hang', times => 1 }]);
$n0 = $t->mark;
my $second = deliver_async(event('b2272459-badb'));
ok(wait_hang($n0), 'the push of another event hangs at the hub');

$srv->reload;
my $w3 = new_worker($w2);
ok($w3, 'a reload started a new worker');
ok(AcsTest::Server::alive($w2), 'the old worker still runs, finishing its push');

$srv->new_log;
($st, $h) = $t->deliver('/eg', event('b2272459-badb'));
is($st, 503, 'a redelivery to the new worker: 503, the old worker\'s claim holds');
my $log = $srv->new_log;
like($log, qr/is being pushed to device "iphone" by another delivery/,
     '... the push is being made by the old worker');
unlike($log, qr/claims of pushes by worker processes that are gone released/,
       'the new worker released nothing when it started');

# the old worker dies: no one takes its slot, the next lookup sees it gone

kill 'KILL', $w2;
ok(gone($w2), 'the old worker is killed');

$n0 = $t->mark;
($st, $h) = $t->deliver('/eg', event('b2272459-badb'));
is($st, 200, 'the next redelivery is pushed at once: 200');
is(pushed_since($n0), 1, '... the push reached the hub');
like($srv->new_log,
     qr/\[info\].*acs_notify_dedup: a push claimed by a worker process that is gone is made again/,
     'the lookup took the dead worker\'s claim over');

# --- and then as before: a redelivery of a pushed event is skipped

$n0 = $t->mark;
($st) = $t->deliver('/eg', event('b2272459-badb'));
is($st, 200, 'one more redelivery: 200');
is(pushed_since($n0), 0, '... nothing pushed twice');
like($srv->new_log, qr/already pushed to device "iphone", skipped/, '... skipped');

close $first;
close $second;
$nh->set_rules([]);
$srv->stop;

my @bad = grep { !/exited on signal 9/ } $srv->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg but the killed workers');

undef $t;
done_testing();
