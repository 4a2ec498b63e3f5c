# Unit test in C: the concurrency limit of a lane (ngx_acs_limit.c) against
# a model of hubs near and far, fast and throttling (docs/dispatch.md, section
# 7), compiled against the configured nginx tree the module
# was built against (t/lib/AcsTest/Tree.pm).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use AcsTest::Tree;

# the configured tree the module was built against (AcsTest::Tree)
my $tree = AcsTest::Tree::find()
    or BAIL_OUT('no configured nginx tree: run ./build.sh build first');
diag("nginx $tree->{version} tree $tree->{path} ($tree->{from})");

AcsTest::Tree::unit($tree, name => 'limit_test',
    sources => 't/unit/limit_test.c ngx_acs_notify_module/ngx_acs_limit.c',
    libs => '-lcrypto');

done_testing();
