# Workers that stay up under load (docs/dispatch.md, section 7, "libcurl's
# receive buffer"): two workers push over HTTP/2 to a stand-in 20 ms away
# while deliveries keep coming, a worker is killed every two seconds, and
# each new worker fetches a 1 MB key set (refused: too deep) over HTTPS
# while the pushes run.  With a receive buffer smaller than libcurl's
# 16 KB, libcurl 7.88 wrote past it and workers died of SIGABRT or SIGSEGV;
# here no worker may die on its own, and every delivery is answered.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep time);
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Server;
use AcsTest::DistantHub;
use AcsTest::FakeNH;

# the key server: a stock nginx with TLS, serving 8,000 arrays 60 deep
my $ks = AcsTest::Server->new('427-keys');
my $tls = AcsTest::FakeNH::setup_ca($ks->root . '/ca');
mkdir $ks->root . '/www';
open my $fh, '>', $ks->root . '/www/keys.json' or die $!;
print $fh '{"keys":[', join(',', ('[' x 60 . ']' x 60) x 8000), ']}';
close $fh;
$ks->write_conf(listen => 'ssl', server => <<"SERVER");
        ssl_certificate $tls->{cert};
        ssl_certificate_key $tls->{key};
        location = /keys {
            alias ${\ $ks->root}/www/keys.json;
            default_type application/json;
        }
SERVER
$ks->start;

my $hub = AcsTest::DistantHub->start(name => '427-hub', delay => 20);
my $srv = AcsTest::Server->new('427-workers-under-load');
my $root = $srv->root;

$srv->write_conf(workers => 2, http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $root/registry max_devices=100;
    acs_notify_hub far ${\ $hub->hub_conf};
HTTP
        location = /eg { acs_notify_eventgrid hub=far; }
        location = /eg-entra {
            acs_notify_eventgrid hub=far;
            acs_notify_entra jwks=https://127.0.0.1:${\ $ks->port}/keys
                             jwks_ca_file=$tls->{ca} jwks_refresh=1s
                             audience=api://load tenant=load;
        }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
$srv->start;

my @users = map { sprintf '8:acs:load-u%03d', $_ } 1 .. 200;
my $ok = 0;
$ok += ($srv->register($_, 'd1', platform => 'fcmv1',
                       handle => "tok-$_" =~ s/[^A-Za-z0-9-]/-/gr) == 201) for @users;
is($ok, 200, '200 devices registered');

# four clients, each delivering 10 events at a time for 10 s
my $secs = 10;
my @clients;
for my $c (1 .. 4) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my ($n, $bad, $cut) = (0, 0, 0);
        my $end = time + $secs;
        while (time < $end) {
            my $body = '[' . join(',', map {
                $n++;
                my $u = $users[($c * 1000 + $n) % @users];
                eg_event(id => qq{"load-$c-$n"}, data => qq({"messageBody":"hi","threadId":"19:t\@thread.v2","senderDisplayName":"A","recipientCommunicationIdentifier":{"rawId":"$u"}}))
            } 1 .. 10) . ']';
            my ($st) = $srv->request(POST => '/eg', $body,
                { 'aeg-event-type' => 'Notification', 'Content-Type' => 'application/json' });
            # a delivery cut by the kill is answered by nobody (status 0)
            if ($st == 0) { $cut++ } elsif ($st != 200) { $bad++ }
        }
        open my $fh, '>', "$root/client-$c" or POSIX::_exit(255);
        print $fh "$cut\n";
        close $fh;
        POSIX::_exit($bad > 255 ? 255 : $bad);
    }
    push @clients, $pid;
}

my @killed;
for (1 .. 4) {
    sleep 2;
    my ($w) = $srv->workers;
    next unless $w;
    kill 'KILL', $w;
    push @killed, $w;
}
my $killed = @killed;
my $bad = 0;
for (@clients) { waitpid $_, 0; $bad += $? >> 8 }
is($killed, 4, 'a worker killed every 2 s, 4 times');
is($bad, 0, 'every delivery answered was answered 200');
my $cut = 0;
for my $c (1 .. 4) {
    open my $fh, '<', "$root/client-$c" or next;
    $cut += <$fh>;
}
ok($cut <= 16, "deliveries left unanswered ($cut): at most the one each client had in flight at each kill");

my $s = $hub->stats;
my $got = $s->{by_status}{201} // 0;
ok($got > 1000, "the hub accepted $got pushes over HTTP/2");
is($s->{by_protocol}{h1} // 0, 0, '... none over HTTP/1.1');

my $log = $srv->whole_log;
like($log, qr/jwks "[^"]+" not fetched: nests arrays and objects too deep/,
     'the key set was fetched (and refused) meanwhile');
my @died = $log =~ /exited on signal (\d+)/g;
is(scalar(grep { $_ == 9 } @died), 4, 'the log names the 4 workers killed');
is_deeply([ grep { $_ != 9 } @died ], [], 'no worker died of anything else');
# nginx's own word for a lock a killed worker held (the master frees it)
my %k = map { $_ => 1 } @killed;
my @severe = grep {
    !/exited on signal 9$/
    && !(/shared memory zone "[^"]+" was locked by (\d+)$/ && $k{$1})
} $srv->bad_lines;
is(join("\n", @severe), '', 'no other [alert], [crit] or [emerg] line');

$srv->stop;
$ks->stop;
done_testing();
