# Proves that the Test::Nginx::Socket harness (t/lib) can fail: runs the
# fixtures in t/harness-fixtures/*.tt in sub-processes and checks exactly
# which of their tests fail.
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Spec;
use IPC::Run ();
use POSIX ();
use Test::More;
use Time::HiRes ();

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');
chdir $root or die "chdir $root: $!";
my $fixtures = 't/harness-fixtures';

# The fixtures use stock nginx directives only; do not let the caller's
# module list or fixed port leak into them.
delete @ENV{qw(TEST_NGINX_LOAD_MODULES TEST_NGINX_PORT)};

# Runs one fixture; returns its TAP split into passing and failing names.
sub run_fixture {
    my ($name, %env) = @_;
    local @ENV{ keys %env } = values %env;
    my ($out, $err) = ('', '');
    IPC::Run::run([$^X, '-It/lib', "$fixtures/$name.tt"],
                  \undef, \$out, \$err, IPC::Run::timeout(300));
    my %r = (out => $out, err => $err, exit => $? >> 8, signal => $? & 127,
             pass => [], fail => []);
    for my $line (split /\n/, $out) {
        if ($line =~ /^ok \d+(?: - (.*))?$/) {
            push @{ $r{pass} }, defined $1 ? $1 : '';
        } elsif ($line =~ /^not ok \d+(?: - (.*))?$/) {
            push @{ $r{fail} }, defined $1 ? $1 : '';
        }
    }
    ($r{planned}) = $out =~ /^1\.\.(\d+)/m;
    return \%r;
}

# nginx processes whose command line mentions the fixture's server root.
sub nginx_processes {
    my ($name) = @_;
    my @pids;
    for my $dir (glob '/proc/[0-9]*') {
        open my $fh, '<', "$dir/cmdline" or next;
        my $cmd = do { local $/; <$fh> };
        next unless defined $cmd;
        $cmd =~ tr/\0/ /;
        push @pids, "$1: $cmd"
            if $cmd =~ /nginx/ && $cmd =~ m{servroot/harness-fixtures-\Q$name\E/}
               && $dir =~ m{(\d+)$};
    }
    return @pids;
}

# check_fixture(NAME, failures => [qr/.../, ...], passes => N,
#               stderr => [qr/.../], env => {...})
# The failing test names must match the given patterns, in order, and
# there must be no other failure.
sub check_fixture {
    my ($name, %opt) = @_;
    my $label = $opt{label} || $name;
    subtest $label => sub {
        my $r = run_fixture($name, %{ $opt{env} || {} });
        my @want = @{ $opt{failures} || [] };
        my @fail = @{ $r->{fail} };

        is(scalar @fail, scalar @want, 'number of failing tests')
            or diag("failing tests:\n" . join('', map { "  $_\n" } @fail)
                    . "stderr:\n$r->{err}");
        for my $i (0 .. $#want) {
            like(defined $fail[$i] ? $fail[$i] : '', $want[$i],
                 "failure $i is the expected one");
        }
        is($r->{exit}, scalar @want, 'exit status = number of failures');
        is($r->{signal}, 0, 'not killed by a signal');
        if (defined $opt{passes}) {
            is(scalar @{ $r->{pass} }, $opt{passes}, 'number of passing tests');
        } else {
            ok(scalar @{ $r->{pass} }, 'some tests pass');
        }
        is($r->{planned}, @{ $r->{pass} } + @fail, 'plan matches the tests run');
        like($r->{err}, $_, "stderr matches $_") for @{ $opt{stderr} || [] };
        unlike($r->{out} . $r->{err}, $_, "output does not match $_")
            for @{ $opt{absent} || [] };
        is_deeply([nginx_processes($name)], [], 'no nginx process left');
    };
}

check_fixture('pass', passes => 131);

check_fixture('master', passes => 14);

check_fixture('only', passes => 2, stderr => [qr/I found ONLY/],
              absent => [qr/TEST 1:/, qr/TEST 3:/]);

check_fixture('fail-body',
    failures => [
        qr/^TEST 2: .* - response_body - response is expected \(repeated req 0, req 0\)$/,
        qr/^TEST 3: .* - response_body - response is expected/,
    ],
    stderr => [qr/^#\s+-B$/m, qr/^#\s+\+b$/m, qr/expected: "goodbye"/]);

check_fixture('fail-code',
    failures => [
        qr/^TEST 2: .* - status code ok /,
        qr/^TEST 3: .* - status code ok /,
    ],
    stderr => [qr/got: '500'/]);

check_fixture('fail-error-log',
    failures => [
        qr/^TEST 1: .*pattern "this text is never logged by nginx" matches a line in error\.log/,
        qr/^TEST 3: .*never \\d\+ logged/,
    ]);

check_fixture('fail-no-error-log',
    failures => [
        qr/^TEST 1: .*pattern "\[error\]" does not match a line in error\.log/,
        qr/^TEST 3: .*open\\\(\\\) \.\* failed.* does not match/,
    ],
    stderr => [qr/\[error\].*open\(\) ".*missing\.html" failed/]);

check_fixture('fail-alert',
    failures => [
        qr/^TEST 1: .* - no \[alert\], \[crit\] or \[emerg\] in error\.log/,
        qr/^TEST 3: .* - no \[alert\], \[crit\] or \[emerg\] in error\.log/,
    ],
    stderr => [qr/\[crit\] .*injected crit/,
               qr/\[alert\] .*injected alert/]);

check_fixture('fail-headers',
    failures => [
        qr/^TEST 2: .* - header X-Secret is absent/,
        qr/^TEST 3: .* - header X-Secret is absent/,
        qr/^TEST 4: .* - header X-Foo like ok/,
        qr/^TEST 5: .* - header X-Foo ok/,
    ]);

check_fixture('fail-must-die',
    failures => [
        qr/^TEST 2: .* - nginx failed to start \(must_die\)/,
        qr/^TEST 3: .* - nginx started/,
    ],
    stderr => [qr/unknown directive "bogus_directive"/]);

check_fixture('fail-array',
    failures => [
        qr/^TEST 2: .* - status code ok \(repeated req 0, req 1\)$/,
        qr/^TEST 3: .* - response_body - response is expected \(repeated req 0, req 1\)$/,
    ]);

check_fixture('fail-misc',
    failures => [
        qr/^TEST 1: .* - status code ok/,
        qr/^TEST 2: .* - response_body_like - response is expected/,
        qr/^TEST 3: .* - response_body_unlike - response is expected/,
        qr/^TEST 4: .* - grep_error_log_out/,
        qr/^TEST 7: .* - init/,
    ],
    stderr => [qr/ERROR: client socket timed out/, qr/init failed on purpose/],
    absent => [qr/TEST 6:/]);

subtest 'a broken eval section aborts the file' => sub {
    my $r = run_fixture('eval-error');
    isnt($r->{exit}, 0, 'non-zero exit');
    is_deeply([@{ $r->{pass} }, @{ $r->{fail} }], [], 'no test ran');
    like($r->{err}, qr/eval in TEST 2: broken eval failed: Undefined subroutine &main::no_such_function_anywhere/,
         'the error names the block');
};

# TEST_NGINX_LOAD_MODULES
# (a stream module built for the nginx under test: Debian's for
# /usr/sbin/nginx, the one beside a binary built in its tree, objs/, as
# `./build.sh matrix` builds it)
SKIP: {
    my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    my $real = abs_path($bin) || '';
    my $module = $real eq '/usr/sbin/nginx'
        ? '/usr/lib/nginx/modules/ngx_stream_module.so'
        : dirname($real) . '/ngx_stream_module.so';
    skip "$module not found (no stream module built for $bin)", 3 unless -f $module;

    check_fixture('load-modules', label => 'load-modules (absolute path)',
                  passes => 4,
                  env => { TEST_NGINX_LOAD_MODULES => $module,
                           EXPECT_MODULE => $module });
    check_fixture('load-modules', label => 'load-modules (relative path)',
                  passes => 4,
                  env => { TEST_NGINX_LOAD_MODULES => File::Spec->abs2rel($module),
                           EXPECT_MODULE => $module });
    check_fixture('load-modules', label => 'load-modules (not set)',
                  failures => [qr/^TEST 1: .* - nginx started/,
                               qr/^load_module line in nginx\.conf$/,
                               qr/^load_module is at the top$/],
                  passes => 0,
                  stderr => [qr/unknown directive "stream"/],
                  env => { EXPECT_MODULE => $module });
}

# nginx must not outlive the test process, however it ends.  Become a
# child subreaper (Linux) so that an nginx orphaned by the SIGKILL case is
# re-parented to us and can be reaped here instead of lingering as a zombie.
my %prctl_nr = (x86_64 => 157, aarch64 => 167);
my ($arch) = (POSIX::uname())[4];
syscall($prctl_nr{$arch}, 36, 1) if $^O eq 'linux' && $prctl_nr{$arch || ''};

for my $sig (qw(TERM INT KILL)) {
    subtest "nginx is stopped when the test process gets SIG$sig" => sub {
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            open STDOUT, '>', '/dev/null';
            open STDERR, '>', '/dev/null';
            exec($^X, '-It/lib', "$fixtures/slow.tt") or POSIX::_exit(127);
        }
        my $deadline = Time::HiRes::time() + 20;
        my @procs;
        until (@procs = nginx_processes('slow')) {
            last if Time::HiRes::time() > $deadline;
            Time::HiRes::sleep(0.05);
        }
        ok(scalar @procs, 'nginx is running during the block');
        Time::HiRes::sleep(0.2);    # let it reach the --- wait
        kill $sig, $pid;
        waitpid $pid, 0;
        $deadline = Time::HiRes::time() + 5;
        while (@procs = nginx_processes('slow')) {
            last if Time::HiRes::time() > $deadline;
            Time::HiRes::sleep(0.05);
        }
        is_deeply(\@procs, [], 'no nginx process left');
        1 while waitpid(-1, POSIX::WNOHANG()) > 0;    # reap orphans
    };
}

done_testing();
