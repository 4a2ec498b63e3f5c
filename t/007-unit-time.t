# Unit test in C: event times (eventTime, CloudEvents time) as
# ngx_acs_event_time() reads them, compiled against the configured nginx
# tree of ./build.sh.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

my $tree = $ENV{ACS_NGINX_TREE} || 'build/nginx-src';
-f "$tree/objs/ngx_auto_config.h"
    or BAIL_OUT("no configured nginx tree in $tree: run ./build.sh build first");

my $dir = tempdir(CLEANUP => 1);
my @inc = map { "-I$tree/$_" } qw(src/core src/event src/event/modules src/os/unix objs);
my $m = 'ngx_acs_notify_module';
my $cmd = join ' ', 'cc -Wall -Werror -O1 -fsanitize=address,undefined',
    '-fno-sanitize-recover=all', @inc, "-I$m",
    "t/unit/time_test.c t/unit/ngx_shim.c $m/ngx_acs_time.c",
    "-lyajl -lcrypto -o $dir/time_test 2>&1";
my $out = `$cmd`;
is($?, 0, 'the unit test compiles') or diag $out;

my @tap = `$dir/time_test`;
my $rc = $?;
for (@tap) {
    next unless /^(not )?ok \d+ - (.*)$/;
    ok(!$1, $2);
}
print grep { /^#/ } @tap;
is($rc, 0, 'the unit test exits 0');

done_testing();
