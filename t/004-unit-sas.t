# Unit test in C: SAS tokens and connection strings against the test vector
# of docs/dispatch.md (section 1), compiled against the configured nginx tree of ./build.sh.

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
    't/unit/sas_test.c t/unit/ngx_shim.c ngx_acs_notify_module/ngx_acs_sas.c',
    "-lcrypto -o $dir/sas_test 2>&1";
my $out = `$cmd`;
is($?, 0, 'the unit test compiles') or diag $out;

my @tap = `$dir/sas_test`;
my $rc = $?;
for (@tap) {
    next unless /^(not )?ok \d+ - (.*)$/;
    ok(!$1, $2);
}
print grep { /^#/ } @tap;
is($rc, 0, 'the unit test exits 0');

done_testing();
