# Unit test in C: SAS tokens and connection strings against the test vector
# of docs/dispatch.md (section 1), compiled against the configured nginx
# tree the module was built against (AcsTest::Tree: ACS_NGINX_TREE, which
# ./build.sh sets, or the tree of its last build).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use File::Temp qw(tempdir);
use AcsTest::Tree;

my $tree = AcsTest::Tree::find()
    or BAIL_OUT('no configured nginx tree: run ./build.sh build first');
diag("nginx $tree->{version} tree $tree->{path} ($tree->{from})");

my ($bin, $bv) = AcsTest::Tree::binary_version();
is($bv, $tree->{version}, "the tree is the version of the nginx under test ($bin)");

my $dir = tempdir(CLEANUP => 1);
my $cmd = join ' ', 'cc -Wall -Werror -O1', $tree->{cflags}, '-Ingx_acs_notify_module',
    't/unit/sas_test.c t/unit/ngx_shim.c ngx_acs_notify_module/ngx_acs_sas.c',
    "-lcrypto -o $dir/sas_test 2>&1";
my $out = `$cmd`;
is($?, 0, "the unit test compiles against the nginx $tree->{version} tree $tree->{path}")
    or diag $out;

my @tap = `$dir/sas_test`;
my $rc = $?;
for (@tap) {
    next unless /^(not )?ok \d+ - (.*)$/;
    ok(!$1, $2);
}
print grep { /^#/ } @tap;
is($rc, 0, 'the unit test exits 0');

done_testing();
