package AcsTest::Tree;

# The configured nginx tree that the C unit tests (t/004, t/006-t/008) compile
# against: the one the module was built against.
#
#   my $tree = AcsTest::Tree::find() or BAIL_OUT(...);
#   $tree->{path}      absolute path of the tree
#   $tree->{version}   its NGINX_VERSION ("1.26.3")
#   $tree->{from}      where that choice came from (for the test's output)
#   $tree->{cflags}    "-I..." for every include directory of its
#                      objs/Makefile (CORE_INCS: core, event, os, objs, and
#                      event/quic where the tree has HTTP/3)
#
# The tree is ACS_NGINX_TREE when set (build.sh sets it), else the tree
# build.sh recorded in build/nginx-tree at its last build, else
# build/nginx-src.  binary_version() is the version of the nginx under
# test (TEST_NGINX_BINARY, else the binary build/nginx-tree names).
#
#   AcsTest::Tree::unit($tree, name => 'sas_test',
#       sources => 't/unit/sas_test.c ngx_acs_notify_module/ngx_acs_sas.c',
#       cflags => '...', libs => '-lcrypto');
# compiles a C unit test (t/unit/ngx_shim.c added) against the tree, runs
# it, and makes each of its "ok N - ..." lines a test of the calling file,
# its "#" lines printed; two tests more: it compiles, it exits 0.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use Test::More;

my $ROOT = abs_path(dirname(__FILE__) . '/../../..');

# KEY=VALUE lines of build/nginx-tree
sub recorded {
    my %r;
    open my $fh, '<', "$ROOT/build/nginx-tree" or return \%r;
    while (<$fh>) {
        $r{$1} = $2 if /^(\w+)=(.*)$/;
    }
    return \%r;
}

sub find {
    my ($path, $from);
    if ($ENV{ACS_NGINX_TREE}) {
        ($path, $from) = ($ENV{ACS_NGINX_TREE}, 'ACS_NGINX_TREE');
    } elsif (my $t = recorded()->{tree}) {
        ($path, $from) = ($t, 'build/nginx-tree, the last ./build.sh build');
    } else {
        ($path, $from) = ("$ROOT/build/nginx-src", 'the default build/nginx-src');
    }
    return unless -f "$path/objs/ngx_auto_config.h" && -f "$path/objs/Makefile";
    $path = abs_path($path);

    open my $h, '<', "$path/src/core/nginx.h" or return;
    my ($version) = do { local $/; <$h> } =~ /^#define NGINX_VERSION\s+"([^"]+)"/m;

    # CORE_INCS = -I src/core \
    #     -I src/event ...
    open my $mk, '<', "$path/objs/Makefile" or return;
    my $text = do { local $/; <$mk> };
    my ($incs) = $text =~ /^CORE_INCS\s*=((?:[^\n]*\\\n)*[^\n]*)/m;
    my @dirs = ($incs // '') =~ /-I\s*(\S+)/g;
    # the module's own directory is the test's (-Ingx_acs_notify_module),
    # not that of the checkout which configured the tree
    @dirs = map { m{^/} ? $_ : "$path/$_" }
            grep { !m{/ngx_acs_notify_module/?$} } @dirs;

    return { path => $path, version => $version, from => $from,
             cflags => join(' ', map { "-I$_" } @dirs), dirs => \@dirs };
}

# the nginx under test and its version ("1.26.3"); undef if it does not
# answer -v
sub binary_version {
    my $bin = $ENV{TEST_NGINX_BINARY} || recorded()->{binary} || '/usr/sbin/nginx';
    my $out = `$bin -v 2>&1`;
    my ($v) = $out =~ m{^nginx version: [^/\s]+/([\d.]+)}m;
    return ($bin, $v);
}

sub unit {
    my ($tree, %a) = @_;
    my $dir = tempdir(CLEANUP => 1);
    my $cmd = join ' ', 'cc -Wall -Werror -O1', $a{cflags} // '', $tree->{cflags},
        '-Ingx_acs_notify_module', $a{sources}, 't/unit/ngx_shim.c',
        $a{libs} // '', "-o $dir/$a{name} 2>&1";
    my $out = `$cmd`;
    is($?, 0, "the unit test compiles against the nginx $tree->{version} tree $tree->{path}")
        or diag $out;

    my @tap = `$dir/$a{name}`;
    my $rc = $?;
    for (@tap) {
        next unless /^(not )?ok \d+ - (.*)$/;
        ok(!$1, $2);
    }
    print grep { /^#/ } @tap;
    is($rc, 0, 'the unit test exits 0');
}

1;
