# A reload whose registry cannot be made (its directory's parent does not
# exist) is refused like any bad configuration: nginx says why, and the
# running master and workers go on with the configuration they have.
# (nginx ends the master when a module's init_module fails: the check
# belongs to the reading of the configuration.)

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep);
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Server;

my $srv = AcsTest::Server->new('250-registry-bad-reload');
my $root = $srv->root;

sub conf {
    my ($registry) = @_;
    $srv->write_conf(workers => 1, http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $registry;
HTTP
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
}

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';

conf("$root/registry");
$srv->start;
is($srv->register($BOB, 'phone', platform => 'fcmv1', handle => 'bad-reload-1'), 201,
   'a registration');
my $master = $srv->master_pid;
my ($worker) = $srv->workers;

my ($ok, $out) = $srv->test_conf;
ok($ok, 'nginx -t: the configuration is fine');

conf("$root/no-such-dir/deeper/registry");
($ok, $out) = $srv->test_conf;
ok(!$ok, 'nginx -t refuses a registry that cannot be made');
like($out, qr/\[emerg\].*acs_notify_registry: cannot create "[^"]*no-such-dir\/deeper\/registry"/,
     '... and says why');

$srv->new_log;
$srv->reload;
sleep 1;
like($srv->new_log, qr/\[emerg\].*acs_notify_registry: cannot create/, 'the reload is refused, with the reason');
ok(AcsTest::Server::alive($master), 'the master still runs');
is(join(',', $srv->workers), $worker, 'the same worker still serves');
is($srv->register($BOB, 'tablet', platform => 'fcmv1', handle => 'bad-reload-2'), 201,
   'registrations still work');

conf("$root/registry");
$srv->stop;
kill 'KILL', $worker if AcsTest::Server::alive($worker);   # orphaned if the master died

done_testing();
