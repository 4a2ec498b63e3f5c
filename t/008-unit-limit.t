# Unit test in C: the concurrency limit of a lane (ngx_acs_limit.c) against
# a model of hubs near and far, fast and throttling (docs/dispatch.md, section
# 7), compiled against the configured nginx tree the module
# was built against (t/lib/AcsTest/Tree.pm).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use File::Temp qw(tempdir);
use AcsTest::Tree;

# the configured tree the module was built against (AcsTest::Tree)
my $tree = AcsTest::Tree::find()
    or BAIL_OUT('no configured nginx tree: run ./build.sh build first');
diag("nginx $tree->{version} tree $tree->{path} ($tree->{from})");

my $dir = tempdir(CLEANUP => 1);
my $cmd = join ' ', 'cc -Wall -Werror -O1', $tree->{cflags}, '-Ingx_acs_notify_module',
    't/unit/limit_test.c t/unit/ngx_shim.c ngx_acs_notify_module/ngx_acs_limit.c',
    "-lcrypto -o $dir/limit_test 2>&1";
my $out = `$cmd`;
is($?, 0, "the unit test compiles against the nginx $tree->{version} tree $tree->{path}")
    or diag $out;

my @tap = `$dir/limit_test`;
my $rc = $?;
for (@tap) {
    next unless /^(not )?ok \d+ - (.*)$/;
    ok(!$1, $2);
}
print grep { /^#/ } @tap;
is($rc, 0, 'the unit test exits 0');

done_testing();
