# Unit test in C: event times (eventTime, CloudEvents time) as
# ngx_acs_event_time() reads them, compiled against the configured nginx
# tree the module was built against (t/lib/AcsTest/Tree.pm).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use AcsTest::Tree;

# the configured tree the module was built against (AcsTest::Tree)
my $tree = AcsTest::Tree::find()
    or BAIL_OUT('no configured nginx tree: run ./build.sh build first');
diag("nginx $tree->{version} tree $tree->{path} ($tree->{from})");

AcsTest::Tree::unit($tree, name => 'time_test',
    sources => 't/unit/time_test.c ngx_acs_notify_module/ngx_acs_time.c',
    cflags => '-fsanitize=address,undefined -fno-sanitize-recover=all',
    libs => '-lyajl -lcrypto');

done_testing();
