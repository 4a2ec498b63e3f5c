# Unit test in C: SAS tokens and connection strings against the test vector
# of docs/dispatch.md (section 1), compiled against the configured nginx
# tree the module was built against (AcsTest::Tree: ACS_NGINX_TREE, which
# ./build.sh sets, or the tree of its last build).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use AcsTest::Tree;

my $tree = AcsTest::Tree::find()
    or BAIL_OUT('no configured nginx tree: run ./build.sh build first');
diag("nginx $tree->{version} tree $tree->{path} ($tree->{from})");

my ($bin, $bv) = AcsTest::Tree::binary_version();
is($bv, $tree->{version}, "the tree is the version of the nginx under test ($bin)");

AcsTest::Tree::unit($tree, name => 'sas_test',
    sources => 't/unit/sas_test.c ngx_acs_notify_module/ngx_acs_sas.c',
    libs => '-lcrypto');

done_testing();
