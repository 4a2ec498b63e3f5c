# Unit test in C: the concurrency limit of a lane (ngx_acs_limit.c) against
# a model of hubs near and far, fast and throttling (docs/dispatch.md, section
# 7), compiled against the configured nginx tree of ./build.sh.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

my $tree = $ENV{ACS_NGINX_TREE} || 'build/nginx-src';
-f "$tree/objs/ngx_auto_config.h"
    or BAIL_OUT("no configured nginx tree in $tree: run ./build.sh build first");

my $dir = tempdir(CLEANUP => 1);
my @inc = map { "-I$tree/$_" } qw(src/core src/event src/event/modules src/os/unix objs);
my $cmd = join ' ', 'cc -Wall -Werror -O1', @inc, '-Ingx_acs_notify_module',
    't/unit/limit_test.c t/unit/ngx_shim.c ngx_acs_notify_module/ngx_acs_limit.c',
    "-lcrypto -o $dir/limit_test 2>&1";
my $out = `$cmd`;
is($?, 0, 'the unit test compiles') or diag $out;

my @tap = `$dir/limit_test`;
my $rc = $?;
for (@tap) {
    next unless /^(not )?ok \d+ - (.*)$/;
    ok(!$1, $2);
}
print grep { /^#/ } @tap;
is($rc, 0, 'the unit test exits 0');

done_testing();
