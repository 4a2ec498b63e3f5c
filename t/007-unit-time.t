# Unit test in C: event times (eventTime, CloudEvents time) as
# ngx_acs_event_time() reads them, compiled against the configured nginx
# tree the module was built against (t/lib/AcsTest/Tree.pm).

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
my $m = 'ngx_acs_notify_module';
my $cmd = join ' ', 'cc -Wall -Werror -O1 -fsanitize=address,undefined',
    '-fno-sanitize-recover=all', $tree->{cflags}, "-I$m",
    "t/unit/time_test.c t/unit/ngx_shim.c $m/ngx_acs_time.c",
    "-lyajl -lcrypto -o $dir/time_test 2>&1";
my $out = `$cmd`;
is($?, 0, "the unit test compiles against the nginx $tree->{version} tree $tree->{path}")
    or diag $out;

my @tap = `$dir/time_test`;
my $rc = $?;
for (@tap) {
    next unless /^(not )?ok \d+ - (.*)$/;
    ok(!$1, $2);
}
print grep { /^#/ } @tap;
is($rc, 0, 'the unit test exits 0');

done_testing();
