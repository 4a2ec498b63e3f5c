# nginx runs every module's init_process in its cache manager and cache
# loader too (a proxy_cache_path is enough to start them).  They serve no
# request: they must not open the registry (an LMDB reader slot for
# nothing), start a libcurl pool or run a second registry sweep.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Dispatch;

my $t = AcsTest::Dispatch->new('240-helper-processes');
my $srv = $t->srv;
my $root = $srv->root;

$srv->write_conf(workers => 1, http => $t->hubs_conf . <<"HTTP", server => <<"SERVER");
    proxy_cache_path $root/cache keys_zone=c:1m;
HTTP
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
$srv->start;

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
is($srv->register($BOB, 'phone', platform => 'fcmv1', handle => 'helper-token'), 201,
   'a registration through the worker');

sub maps_registry {
    open my $fh, '<', "/proc/$_[0]/maps" or return 0;
    return scalar grep { m{/registry/data\.mdb$} } <$fh>;
}

# the master's children: the worker, the cache manager and, for its first
# minute, the cache loader (told apart by what they map, as their titles
# are not theirs under valgrind)
my @children = $srv->workers;
ok(@children >= 2, 'a cache manager runs beside the worker (' . scalar(@children) . ' children)');
my @mapping = grep { maps_registry($_) } @children;
is(scalar @mapping, 1, 'one child maps the registry: the worker');

$srv->stop;
my @bad = $srv->bad_lines(qw(alert crit emerg error));
is(join("\n", @bad), '', 'no error, alert, crit or emerg');

done_testing();
