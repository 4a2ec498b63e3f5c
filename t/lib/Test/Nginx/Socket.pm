package Test::Nginx::Socket;

use strict;
use warnings;

our $VERSION = '0.01';

=head1 NAME

Test::Nginx::Socket - data-driven nginx tests (clean-room implementation)

=head1 SYNOPSIS

    use lib 't/lib';
    use Test::Nginx::Socket 'no_plan';

    no_shuffle();
    run_tests();

    __DATA__

    === TEST 1: hello
    --- config
        location = /t { return 200 "hi"; }
    --- request
    GET /t
    --- response_body chomp
    hi
    --- no_error_log
    [error]

Run with C<prove -I t/lib -j2 -r t> from the repository root.

=head1 DESCRIPTION

A small, independent re-implementation of the user-facing format of
OpenResty's C<Test::Nginx::Socket>.  Test files contain L<Test::Base>
blocks; for every block (and every repetition, see C<repeat_each>) the
harness writes an C<nginx.conf>, starts nginx, sends the block's HTTP
requests, stops nginx and then checks the responses and the part of the
error log written for that block.

Because nginx is stopped before the error log is read, all log lines of
the block (including those written at shutdown) are complete when the
checks run.

=head2 Environment

=over

=item C<TEST_NGINX_BINARY>

The nginx binary; default C<nginx> from C<PATH>, else C</usr/sbin/nginx>.

=item C<TEST_NGINX_LOAD_MODULES>

Space separated C<.so> paths (absolute or relative to the current
directory).  A C<load_module /abs/path;> line is emitted for each, at the
top of C<nginx.conf>.

=item C<TEST_NGINX_SERVROOT>

Parent directory of the server roots (default C<t/servroot>).  Each test
file gets its own server root C<< <parent>/<name> >>, where I<name> is the
file's path relative to the current directory without a leading C<t/>,
without extension and with C</> turned into C<->
(C<t/foo/bar.t> -> C<t/servroot/foo-bar>).  So C<prove -j2> never
shares a server root between two files.  The server root is removed and
recreated when the test file starts and is kept afterwards for debugging.
After loading, C<$ENV{TEST_NGINX_SERVROOT}> holds the actual server root.

=item C<TEST_NGINX_PORT>

Force the listening port (default: a random free port per test file).

=back

When the module is loaded it sets C<$ENV{TEST_NGINX_SERVER_PORT}>,
C<$ENV{TEST_NGINX_SERVROOT}> and C<$ENV{TEST_NGINX_HTML_DIR}>.  Every
C<$TEST_NGINX_XXX> in the C<main_config>, C<http_config>, C<config>,
C<request>, C<raw_request> and C<more_headers> sections is replaced by
C<$ENV{TEST_NGINX_XXX}> when that variable exists (unknown names are left
alone).

=head2 Server root layout and generated configuration

    <servroot>/conf/nginx.conf
    <servroot>/logs/error.log, access.log, nginx.pid, stderr.log
    <servroot>/html/                      (user_files go here)
    <servroot>/{client_body,proxy,fastcgi,uwsgi,scgi}_temp/

C<nginx.conf> looks like this (C<master_process> and C<worker_processes>
follow C<master_on> and C<workers>; C<user root;> is only added when
running as root):

    load_module /abs/path.so;            # TEST_NGINX_LOAD_MODULES
    daemon off;
    master_process off;
    worker_processes 1;
    user root;
    error_log logs/error.log debug;      # log_level
    pid logs/nginx.pid;
    lock_file logs/nginx.lock;
    env NAME;                            # env_to_nginx
    MAIN_CONFIG
    events { accept_mutex off; worker_connections 1024; }
    http {
        access_log logs/access.log;
        default_type text/plain;
        keepalive_timeout 68;
        client_body_temp_path <servroot>/client_body_temp;  # and the others
        HTTP_CONFIG
        server {
            listen 127.0.0.1:PORT;
            server_name localhost;
            client_max_body_size 30M;
            location / { root html; index index.html index.htm; }
            CONFIG
        }
    }

nginx runs in the foreground (C<daemon off>) as a child of the test
process, in its own process group.  Its stderr goes to
C<logs/stderr.log>; what nginx prints there while starting (before it
opens C<error.log>) is prepended to the block's error log text, so
C<error_log>/C<no_error_log> checks and C<must_die> see start-up messages.
nginx counts as started once it has written its pid file and listens on
the port (no probe connection is made).  It is stopped with SIGQUIT
(repeated every 0.25s, because a signal landing just before nginx blocks in
C<epoll_wait()> may otherwise go unnoticed), and SIGKILL (to the whole
process group) after 5 seconds.  nginx is also stopped from an C<END>
block and from SIGINT/SIGTERM/SIGHUP handlers, and on Linux it gets SIGKILL
from the kernel if the test process dies abruptly.

=head1 FUNCTIONS

All of these are exported by default, together with the L<Test::Base>
exports (C<plan>, C<blocks>, C<is>, C<ok>, C<like>, C<unlike>,
C<is_deeply>, C<cmp_ok>, C<pass>, C<fail>, C<diag>, C<skip>, C<no_diff>,
...).

=over

=item C<run_tests()>

Runs all blocks.  If no plan has been declared, C<no_plan> is used.

=item C<repeat_each($n)>

Run every block C<$n> times (default 1).  Without argument returns the
current value, for use in C<plan tests =E<gt> ...> formulas.

=item C<no_shuffle()>

Accepted for compatibility; blocks are never shuffled (see L</"DIFFERENCES FROM THE ORIGINAL">).

=item C<no_root_location()>

Do not emit the default C<location / { root html; ... }>.

=item C<log_level($level)>

Default error log level (C<debug> unless changed); returns the current one.

=item C<workers($n)>

Sets C<worker_processes>; only meaningful with C<master_on()>.

=item C<master_on()>, C<master_off()>

Run nginx with or without a master process (default off).

=item C<env_to_nginx(@names)>

Emit C<env NAME;> (or C<env NAME=value;>) main-level directives.

=item C<add_block_preprocessor(sub { my $block = shift; ... })>

Called for every block before it runs (after Test::Base filters).  Use
C<< $block->set_value(section => $value) >> to add or change sections.

=item C<html_dir()>, C<server_root()>, C<server_port()>

Absolute html directory, absolute server root, listening port.

=item C<no_long_string()>

Show the plain Test::More C<is> output (full strings) instead of the
Test::LongString one when a single-line C<response_body> differs.

=item C<no_diff()>

(From Test::Base.)  Do not print a Text::Diff for multi-line mismatches.

=item C<Test::Nginx::Socket::http_request($method, $uri, \%headers, $body)>

Not exported.  Sends one request to C<127.0.0.1:server_port()> with the
harness's HTTP client and returns C<($status, \%headers, $body)> (header
names lower-cased, repeated headers joined with C<", ">).  Note that nginx
only runs while the harness executes a block, so this is mainly a
debugging aid.

=back

=head1 SECTIONS

Every section accepts the usual Test::Base filters (C<eval>, C<chomp>,
...).  Unless said otherwise, C<eval> may return a scalar or, for
per-request sections, an array reference with one entry per request.

C<eval> code runs in package C<main> (under C<use strict>), so functions
and C<our> variables of the test file and of modules it imports can be
used (C<fixture('x.json')>, C<$::body>).  An C<eval> that dies aborts the
test file with a message naming the block.  Filters run when the blocks
are first read (at C<run_tests> or C<blocks()>), so set the variables
they use before that.

=head2 nginx configuration

=over

=item C<main_config>, C<http_config>, C<config>

Text inserted at the top level, inside C<http {}>, and inside the default
C<server {}> respectively.

=item C<log_level>

Per-block error log level (e.g. C<--- log_level: warn>).

=item C<user_files>

Files created below the html directory before nginx starts:

    --- user_files
    >>> index.html
    <h1>hi</h1>
    >>> sub/dir/data.txt
    some data

With C<eval>, an array ref of C<[name, content]> pairs is also accepted.

=item C<init>

Perl code evaluated in package C<main> before nginx is started for the
block (after the error log offset has been noted, so anything it appends to
C<logs/error.log> counts as this block's log).  If it dies, the block
fails.

=item C<must_die>

nginx must fail to start.  One test: C<nginx failed to start (must_die)>.
Then C<error_log>/C<no_error_log> are checked against nginx's start-up
output and error log.  C<[emerg]> lines are allowed in such blocks.

=back

=head2 Requests

=over

=item C<request>

First line C<METHOD URI [HTTP/x.y]> (default C<HTTP/1.1>), the rest is the
body.  In the plain (non-C<eval>) form a single trailing newline of the
body is removed; with C<eval> the body is used exactly.  The harness adds
C<Host: localhost>, C<Connection: close> (HTTP/1.1 only) and a
C<Content-Length> (when there is a body or the method is POST, PUT or
PATCH), unless C<more_headers> supplies them.  C<request eval> may return
an array ref of such strings: one request (on a new connection) each.

=item C<more_headers>

One C<Name: value> per line, added to the request(s).  With C<eval> an
array ref gives one header text per request.

=item C<raw_request>

Bytes sent as they are.  With C<eval> returning an array ref, the pieces
are sent one after another on the same connection, with
C<raw_request_middle_delay> seconds (default 0) between them.

=item C<timeout>

Read/write inactivity timeout per request in seconds (C<5>, C<1.5>,
C<500ms>); default 3.

=item C<wait>

Seconds to sleep after the last response before nginx is stopped and the
error log is read.

=item C<ignore_response>

Skip all response checks (including the status code).

=back

=head2 Response checks

For each request, in this order:

=over

=item C<error_code>

Expected status (default 200; the status is always checked).  Test name
C<TEST n: title - status code ok>.  If the response could not be read
completely (timeout, connection error, truncated body) this test fails and
a diagnostic says why (e.g. C<ERROR: client socket timed out>).

=item C<response_headers>

Lines C<Name: value> compared exactly with the (comma joined) header value.
C<Name:> with an empty value, or C<!Name>, means the header must be absent.

=item C<response_headers_like>

Like C<response_headers>, but the value is a regex that must match the
whole header value (C<qr/^(?:VALUE)$/>).

=item C<response_body>

Exact comparison (use C<chomp> to drop the trailing newline).  Multi-line
mismatches are shown as a unified diff.

=item C<response_body_like>, C<response_body_unlike>

Regex matched against the whole body with the C</s> modifier.  In the plain
form a single trailing newline of the pattern is removed.  With C<eval> a
C<qr//> object or a string may be given.

=back

Names look like C<TEST 1: title - response_body - response is expected
(repeated req 0, req 0)>; "repeated req" is the repetition index, "req"
the index in the request array.

=head2 Error log checks

Once per repetition, against the error log lines written for this
repetition (plus nginx's start-up stderr output):

=over

=item C<error_log>

Each non-blank line is a substring that must appear in some line.  With
C<eval>: a string, a C<qr//>, or an array ref of those (regexes are
matched line by line).

=item C<no_error_log>

Same forms; each pattern must not match any line.

=item C<grep_error_log>, C<grep_error_log_out>

C<grep_error_log> is a string or (eval) a regex; every match in every log
line is collected and the matches are joined, each followed by a newline.
The result is compared exactly with C<grep_error_log_out>, or matched if
that is a C<qr//> (an array ref gives one expectation per repetition).

=back

Error-log policy: a line logged at C<[alert]>, C<[crit]> or C<[emerg]>
makes the block fail (one extra failing test, C<no [alert], [crit] or
[emerg] in error.log>) unless the line matches one of the block's
C<error_log> patterns (or is an C<[emerg]> in a C<must_die> block).  If
nginx exits abnormally (crash, non-zero exit status) a failing test is
added too.  No test is emitted when all is well, so test counts are
unaffected.

=head2 Block selection

C<--- ONLY> runs only that block, C<--- SKIP> skips it, C<--- LAST> stops
after it (Test::Base semantics).

=head1 DIFFERENCES FROM THE ORIGINAL

=over

=item * Blocks are never shuffled; C<no_shuffle()> is a no-op.

=item * nginx is (re)started for every block and every repetition, and
stopped before the checks run; there is no "reuse the running server"
mode, no valgrind/leak/mock-EAGAIN/HUP-reload modes, no C<pipelined_requests>,
C<--- curl>, C<--- abort>, C<--- udp*>/C<--- tcp*>, C<--- stap>,
C<--- response_body_filters>, C<--- skip_nginx>, C<--- http2> etc.

=item * Only C<listen 127.0.0.1:PORT> over plain HTTP; no SSL client.

=item * The server root is per test file (see C<TEST_NGINX_SERVROOT>),
named after the file, not C<t/servroot>.

=item * The C<[alert]>/C<[crit]>/C<[emerg]> policy and the abnormal-exit
check are additions.

=item * If no plan was given, C<run_tests> declares C<no_plan>.

=item * C<eval> sections run in package C<main> (Test::Base runs them in
C<Test::Base::Filter>) and die on error (Test::Base returns C<$@> as the
section value).

=item * C<response_headers>: an empty value means "absent" (as does
C<!Name>).  C<request>: a single trailing newline of a non-eval body is
removed.  C<response_body_like>: a single trailing newline of a non-eval
pattern is removed.

=back

=cut

use Test::Base ();
use Test::Base::Filter ();
our @ISA = ('Test::Base');

use Errno ();
use IO::Select;
use IO::Socket::INET;
use Test::Builder;
use Test::LongString ();
use Test::More ();
use Text::Diff ();
use Time::HiRes ();

use Test::Nginx::Util qw(
    setup_environment server_root html_dir server_port nginx_binary
    build_nginx_conf write_file start_nginx stop_nginx error_log_path
    error_log_size read_file_from stderr_log_path
);

our @EXPORT = qw(
    run_tests no_shuffle repeat_each no_root_location log_level workers
    master_on master_off env_to_nginx add_block_preprocessor
    html_dir server_root server_port no_long_string
);

my $RepeatEach     = 1;
my $LogLevel       = 'debug';
my $Workers;
my $MasterOn       = 0;
my $NoRootLocation = 0;
my $NoLongString   = 0;
my @EnvToNginx;
my @BlockPreprocessors;

my $DefaultTimeout = 3;

# Lines nginx writes at these levels make a block fail unless expected.
my $SevereLine = qr{^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d|nginx:) \[(alert|crit|emerg)\]};

# ---------------------------------------------------------------------------
# Import: prepare the server root and port, then let Test::Base do the rest
# (plan arguments, strict/warnings in the test file, exports).

my $Prepared;

sub import {
    my @args = @_;
    unless ($Prepared++ || grep { defined $_ && $_ eq 'skip_all' } @args) {
        setup_environment($0);
    }
    goto &Test::Base::import;
}

# ---------------------------------------------------------------------------
# Settings

sub repeat_each {
    $RepeatEach = shift if @_;
    return $RepeatEach;
}

sub no_shuffle { return }

sub no_root_location { $NoRootLocation = 1; return }

sub log_level {
    $LogLevel = shift if @_;
    return $LogLevel;
}

sub workers {
    $Workers = shift if @_;
    return $Workers;
}

sub master_on  { $MasterOn = 1; return }
sub master_off { $MasterOn = 0; return }

sub env_to_nginx { push @EnvToNginx, @_; return }

sub no_long_string { $NoLongString = 1; return }

sub add_block_preprocessor {
    my ($code) = @_;
    die "add_block_preprocessor needs a code reference\n"
        unless ref $code eq 'CODE';
    push @BlockPreprocessors, $code;
    return;
}

# ---------------------------------------------------------------------------
# Running blocks

sub run_tests {
    Test::More::plan('no_plan') unless Test::Builder->new->has_plan;
    # Report failures at the test file's run_tests() line.
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    my $bin = nginx_binary();
    die "Test::Nginx: nginx binary '$bin' not found or not executable "
        . "(set TEST_NGINX_BINARY)\n" unless -f $bin && -x _;

    for my $block (Test::Base::blocks()) {
        $_->($block) for @BlockPreprocessors;
        for my $rep (0 .. $RepeatEach - 1) {
            run_block($block, $rep);
        }
    }
    return;
}

# Value of a section (undef if absent).  Test::Base keeps a list per
# section; like its accessors we return the first element.
sub _section {
    my ($block, $name) = @_;
    return undef unless exists $block->{$name};
    my $list = $block->{$name};
    return ref $list eq 'ARRAY' ? $list->[0] : $list;
}

sub _has_section { exists $_[0]->{ $_[1] } }

sub _section_is_eval {
    my ($block, $name) = @_;
    my $map = _section($block, '_section_map') || {};
    my $filters = $map->{$name} ? $map->{$name}{filters} : '';
    return defined $filters && $filters =~ /(?:^|\s)eval(?:\s|$)/;
}

# One run of a block: configure, start, request, stop, check.
sub run_block {
    my ($block, $rep) = @_;
    my $name = $block->name;
    $name = 'block ' . $block->seq_num unless defined $name && length $name;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    if (defined(my $files = _section($block, 'user_files'))) {
        my $err = _write_user_files($files);
        if ($err) {
            Test::More::fail("$name - user_files (req $rep)");
            Test::More::diag($err);
            return;
        }
    }

    my $level = _section($block, 'log_level');
    $level = $LogLevel unless defined $level && $level =~ /\S/;
    $level =~ s/^\s+|\s+$//g;

    my $conf = build_nginx_conf(
        comment       => "$0 $name",
        main_config   => expand_env(_section($block, 'main_config')),
        http_config   => expand_env(_section($block, 'http_config')),
        config        => expand_env(_section($block, 'config')),
        log_level     => $level,
        master        => $MasterOn,
        workers       => $Workers,
        root_location => !$NoRootLocation,
        env           => \@EnvToNginx,
    );
    write_file(server_root() . '/conf/nginx.conf', $conf);

    my $offset = error_log_size();

    if (defined(my $init = _section($block, 'init'))) {
        local $@;
        (my $where = "init of $name") =~ s/["\n]//g;
        unless (eval "package main;\n#line 1 \"$where\"\n$init;\n1") {
            Test::More::fail("$name - init (req $rep)");
            Test::More::diag("init code died: $@");
            return;
        }
    }

    my $start = start_nginx();
    my $startup = read_file_from(stderr_log_path(), 0);

    if (_has_section($block, 'must_die')) {
        stop_nginx() if $start->{ok};
        my $log = $startup . read_file_from(error_log_path(), $offset);
        Test::More::ok(!$start->{ok},
                       "$name - nginx failed to start (must_die) (req $rep)")
            or Test::More::diag("nginx started although the block has "
                                . "--- must_die");
        _check_error_log($block, $name, $rep, $log, 1);
        return;
    }

    unless ($start->{ok}) {
        Test::More::fail("$name - nginx started (req $rep)");
        Test::More::diag(_describe_start_failure($start));
        my $log = $startup . read_file_from(error_log_path(), $offset);
        Test::More::diag("nginx output:\n" . _tail($log, 30)) if $log =~ /\S/;
        return;
    }

    my ($requests, $err) = _block_requests($block);
    if ($err) {
        stop_nginx();
        Test::More::fail("$name - request section (req $rep)");
        Test::More::diag($err);
        return;
    }

    my $timeout = _parse_seconds(_section($block, 'timeout'), $DefaultTimeout);
    my @responses = map { _http_exchange(%$_, timeout => $timeout) } @$requests;

    if (defined(my $wait = _section($block, 'wait'))) {
        my $secs = _parse_seconds($wait, 0);
        Time::HiRes::sleep($secs) if $secs > 0;
    }

    my $status = stop_nginx();
    my $log = $startup . read_file_from(error_log_path(), $offset);

    unless (_has_section($block, 'ignore_response')) {
        for my $i (0 .. $#responses) {
            _check_response($block, $name, $rep, $i, $responses[$i]);
        }
    }
    _check_error_log($block, $name, $rep, $log, 0);

    if (defined $status && $status != 0) {
        Test::More::fail("$name - nginx exited normally (req $rep)");
        Test::More::diag(($status & 127)
            ? "nginx was killed by signal " . ($status & 127)
              . (($status & 128) ? ' (core dumped)' : '')
            : "nginx exited with status " . ($status >> 8));
    }
    return;
}

sub _describe_start_failure {
    my ($start) = @_;
    return "nginx failed to start: $start->{error}" if $start->{error};
    my $st = $start->{status};
    return "nginx exited during start-up, "
        . (($st & 127) ? "killed by signal " . ($st & 127)
                       : "exit status " . ($st >> 8));
}

sub _tail {
    my ($text, $n) = @_;
    my @lines = split /\n/, $text;
    splice @lines, 0, @lines - $n if @lines > $n;
    return join '', map { "    $_\n" } @lines;
}

# "5", "1.5", "2s", "500ms" -> seconds.
sub _parse_seconds {
    my ($value, $default) = @_;
    return $default unless defined $value;
    (my $v = $value) =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $v =~ /^(\d+(?:\.\d+)?)ms$/;
    return $1 + 0 if $v =~ /^(\d+(?:\.\d+)?)s?$/;
    warn "Test::Nginx: cannot parse duration '$v', using $default\n";
    return $default;
}

# Replace $TEST_NGINX_XXX by $ENV{TEST_NGINX_XXX} where that exists.
sub expand_env {
    my ($value) = @_;
    return $value unless defined $value;
    return [ map { expand_env($_) } @$value ] if ref $value eq 'ARRAY';
    return $value if ref $value;
    $value =~ s/\$(TEST_NGINX_[A-Za-z0-9_]+)/
        exists $ENV{$1} ? $ENV{$1} : "\$$1"/ge;
    return $value;
}

sub _write_user_files {
    my ($spec) = @_;
    my @files;
    if (ref $spec eq 'ARRAY') {
        @files = map { ref $_ eq 'ARRAY' ? [@$_] : [$_, ''] } @$spec;
    } else {
        my $current;
        for my $line (split /^/m, $spec) {
            if ($line =~ /^>>> (\S+)\s*$/) {
                push @files, $current = [$1, ''];
            } elsif ($current) {
                $current->[1] .= $line;
            } elsif ($line =~ /\S/) {
                return "user_files: content before the first '>>> name' line";
            }
        }
    }
    for my $file (@files) {
        my ($name, $content) = @$file;
        return "user_files: bad file name '$name'"
            if !defined $name || $name eq '' || $name =~ m{^/}
               || $name =~ m{(?:^|/)\.\.(?:/|$)};
        write_file(html_dir() . "/$name", defined $content ? $content : '');
    }
    return;
}

# ---------------------------------------------------------------------------
# Building requests

# Returns ([ { bytes => [...], method => ..., delay => ... }, ... ], $error).
sub _block_requests {
    my ($block) = @_;
    my $delay = _parse_seconds(_section($block, 'raw_request_middle_delay'), 0);

    if (_has_section($block, 'raw_request')) {
        my $raw = expand_env(_section($block, 'raw_request'));
        my @pieces = ref $raw eq 'ARRAY' ? @$raw : ($raw);
        my ($method) = ($pieces[0] // '') =~ /^\s*(\S+)/;
        return ([ { pieces => \@pieces, method => $method || '',
                    delay => $delay } ]);
    }

    return ([]) unless _has_section($block, 'request');

    my $spec = expand_env(_section($block, 'request'));
    my $more = expand_env(_section($block, 'more_headers'));
    my $trim_body = !_section_is_eval($block, 'request');
    my @specs = ref $spec eq 'ARRAY' ? @$spec : ($spec);
    my @requests;
    for my $i (0 .. $#specs) {
        return (undef, "request $i is not a string")
            if !defined $specs[$i] || ref $specs[$i];
        my $headers = ref $more eq 'ARRAY' ? $more->[$i] : $more;
        my ($bytes, $method) = build_http_request($specs[$i], $headers,
                                                  $trim_body);
        return (undef, "request $i: cannot parse '$specs[$i]'")
            unless defined $bytes;
        push @requests, { pieces => [$bytes], method => $method,
                          delay => 0 };
    }
    return (\@requests);
}

# "METHOD URI [HTTP/x.y]\nBODY" + header text -> (raw request bytes, method)
sub build_http_request {
    my ($spec, $more_headers, $trim_body) = @_;
    $spec =~ s/\A\s+//;
    my ($line, $body) = split /\n/, $spec, 2;
    return unless defined $line && $line =~ /\S/;
    $body = '' unless defined $body;
    $body =~ s/\n\z// if $trim_body;

    my @parts = split ' ', $line;
    my $method = shift @parts;
    my $proto = (@parts > 1 && $parts[-1] =~ m{^HTTP/}) ? pop @parts
                                                        : 'HTTP/1.1';
    my $uri = @parts ? join(' ', @parts) : '/';

    my @headers = _parse_header_lines($more_headers);
    my %have = map { lc($_->[0]) => 1 } @headers;
    my @lines;
    push @lines, 'Host: localhost' unless $have{host};
    push @lines, 'Connection: close'
        if $proto eq 'HTTP/1.1' && !$have{connection};
    push @lines, map { "$_->[0]: $_->[1]" } @headers;

    utf8::encode($body) if $body =~ /[^\x00-\xff]/;
    if (!$have{'content-length'} && !$have{'transfer-encoding'}
        && (length $body || $method =~ /^(?:POST|PUT|PATCH)$/))
    {
        push @lines, 'Content-Length: ' . length $body;
    }

    my $head = "$method $uri $proto\r\n" . join('', map { "$_\r\n" } @lines)
             . "\r\n";
    utf8::encode($head) if $head =~ /[^\x00-\xff]/;
    return ($head . $body, $method);
}

# "Name: value" lines -> ([name, value], ...)
sub _parse_header_lines {
    my ($text) = @_;
    return () unless defined $text;
    my @headers;
    for my $line (split /\r?\n/, $text) {
        next unless $line =~ /\S/;
        my ($name, $value) = split /:\s*/, $line, 2;
        $name =~ s/^\s+|\s+$//g;
        $value = '' unless defined $value;
        $value =~ s/\s+$//;
        push @headers, [$name, $value];
    }
    return @headers;
}

# ---------------------------------------------------------------------------
# HTTP client

# Sends the pieces of one request on a new connection and reads the
# response.  Returns a response hash (see _parse_response) with an extra
# 'error' key when something went wrong (timeout, connection error,
# truncated response).
sub _http_exchange {
    my (%req) = @_;
    my $timeout = $req{timeout} || $DefaultTimeout;
    local $SIG{PIPE} = 'IGNORE';

    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => server_port(),
        Proto    => 'tcp',
        Timeout  => $timeout,
    ) or return { error => "cannot connect to 127.0.0.1:" . server_port()
                           . ": $!" };
    binmode $sock;
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);

    my $error;
    my @pieces = @{ $req{pieces} };
  PIECE:
    for my $n (0 .. $#pieces) {
        my $data = defined $pieces[$n] ? $pieces[$n] : '';
        utf8::encode($data) if $data =~ /[^\x00-\xff]/;
        while (length $data) {
            unless ($sel->can_write($timeout)) {
                $error = "client socket timed out while sending the request";
                last PIECE;
            }
            my $w = syswrite $sock, $data;
            if (!defined $w) {
                next if $!{EINTR} || $!{EAGAIN};
                last PIECE;    # peer closed early; read what it said
            }
            substr($data, 0, $w, '');
        }
        Time::HiRes::sleep($req{delay}) if $req{delay} && $n < $#pieces;
    }

    my $buf = '';
    my $state = { method => $req{method} || '' };
    unless ($error) {
        while (!_response_complete(\$buf, $state)) {
            unless ($sel->can_read($timeout)) {
                $error = "client socket timed out after ${timeout}s while "
                       . "reading the response (got " . length($buf)
                       . " bytes)";
                last;
            }
            my $n = sysread $sock, $buf, 65536, length $buf;
            if (!defined $n) {
                next if $!{EINTR} || $!{EAGAIN};
                last if $!{ECONNRESET} && length $buf;
                $error = "error reading the response: $!";
                last;
            }
            last if $n == 0;
        }
    }
    close $sock;

    my $res = _parse_response($buf, $state->{method});
    $error ||= $res->{parse_error};
    $res->{error} = $error if $error;
    return $res;
}

# Called after each read: is the response complete?  (So that a keep-alive
# response need not wait for the timeout.)  The final response header is
# parsed once and the framing cached in $state.
sub _response_complete {
    my ($bufref, $state) = @_;
    unless (defined $state->{body_start}) {
        my $pos = 0;
        while (1) {
            my $end = index $$bufref, "\r\n\r\n", $pos;
            return 0 if $end < 0;
            my $head = substr $$bufref, $pos, $end - $pos;
            $pos = $end + 4;
            my ($status) = $head =~ m{^HTTP/\d+\.\d+\s+(\d{3})};
            return 0 unless defined $status;     # garbage: read until EOF
            next if $status =~ /^1/ && $status != 101;   # interim response
            $state->{body_start} = $pos;
            $state->{no_body} = $state->{method} eq 'HEAD'
                                || $status =~ /^(?:1\d\d|204|304)$/;
            $state->{chunked} =
                $head =~ /^Transfer-Encoding:[^\r\n]*chunked/mi ? 1 : 0;
            ($state->{length}) = $head =~ /^Content-Length:[ \t]*(\d+)/mi;
            last;
        }
    }
    return 1 if $state->{no_body};
    my $have = length($$bufref) - $state->{body_start};
    if ($state->{chunked}) {
        # Look for the last-chunk at the end before decoding everything.
        my $tail_len = $have < 8192 ? $have : 8192;
        my $tail = substr $$bufref, -$tail_len;
        return 0 unless $tail_len
            && $tail =~ /(?:^|\r\n)0+[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n\z/;
        my (undef, $complete) =
            _decode_chunked(substr $$bufref, $state->{body_start});
        return $complete;
    }
    return $have >= $state->{length} if defined $state->{length};
    return 0;    # body delimited by connection close
}

# Parses a raw HTTP response.  Returns a hash:
#   status, reason, protocol, headers => [[name, value], ...],
#   body (decoded from chunked if needed), raw,
#   incomplete (more data was expected), parse_error.
sub _parse_response {
    my ($buf, $method) = @_;
    my %res = (raw => $buf, headers => [], body => '');
    $method = '' unless defined $method;

    my $rest = $buf;
    my ($status, $head);
    while (1) {
        my $end = index $rest, "\r\n\r\n";
        if ($end < 0) {
            $res{incomplete} = 1;
            $res{parse_error} = length $buf
                ? "incomplete response header" : "empty response";
            return \%res;
        }
        $head = substr $rest, 0, $end;
        $rest = substr $rest, $end + 4;
        ($status) = $head =~ m{^HTTP/\d+\.\d+\s+(\d{3})};
        last unless defined $status && $status =~ /^1/ && $status != 101;
    }

    my ($status_line, @lines) = split /\r\n/, $head;
    if ($status_line =~ m{^(HTTP/\d+\.\d+)\s+(\d{3})(?:\s+(.*))?$}) {
        @res{qw(protocol status reason)} = ($1, $2, defined $3 ? $3 : '');
    } else {
        $res{parse_error} = "bad status line: $status_line";
        $res{body} = $rest;
        return \%res;
    }
    for my $line (@lines) {
        if ($line =~ /^([^:\s]+)\s*:\s*(.*?)\s*$/) {
            push @{ $res{headers} }, [$1, $2];
        } elsif ($line =~ /^\s+(.*?)\s*$/ && @{ $res{headers} }) {
            $res{headers}[-1][1] .= " $1";    # obsolete line folding
        }
    }

    if ($method eq 'HEAD' || $res{status} =~ /^(?:1\d\d|204|304)$/) {
        return \%res;
    }

    my $te = _header_value(\%res, 'Transfer-Encoding');
    my $cl = _header_value(\%res, 'Content-Length');
    if (defined $te && $te =~ /chunked/i) {
        my ($body, $complete, $err) = _decode_chunked($rest);
        $res{body} = $body;
        unless ($complete) {
            $res{incomplete} = 1;
            $res{parse_error} = $err || "truncated chunked body";
        }
    } elsif (defined $cl && $cl =~ /^\d+$/) {
        if (length $rest < $cl) {
            $res{incomplete} = 1;
            $res{parse_error} = "truncated body: got " . length($rest)
                              . " of $cl bytes";
            $res{body} = $rest;
        } else {
            $res{body} = substr $rest, 0, $cl;
        }
    } else {
        $res{body} = $rest;    # delimited by connection close
    }
    return \%res;
}

# Returns (decoded body, complete?, error).
sub _decode_chunked {
    my ($data) = @_;
    my $body = '';
    my $pos = 0;
    while (1) {
        my $eol = index $data, "\r\n", $pos;
        return ($body, 0) if $eol < 0;
        my $line = substr $data, $pos, $eol - $pos;
        return ($body, 0, "bad chunk size line '$line'")
            unless $line =~ /^\s*([0-9a-fA-F]+)/;
        my $size = hex $1;
        $pos = $eol + 2;
        if ($size == 0) {
            # trailers, then an empty line
            while (1) {
                my $end = index $data, "\r\n", $pos;
                return ($body, 0) if $end < 0;
                my $trailer = substr $data, $pos, $end - $pos;
                $pos = $end + 2;
                return ($body, 1) if $trailer eq '';
            }
        }
        return ($body . substr($data, $pos), 0)
            if length($data) < $pos + $size + 2;
        $body .= substr $data, $pos, $size;
        $pos += $size;
        return ($body, 0, "missing CRLF after chunk data")
            unless substr($data, $pos, 2) eq "\r\n";
        $pos += 2;
    }
}

# All values of a header (case-insensitive) joined with ", "; undef if
# absent.
sub _header_value {
    my ($res, $name) = @_;
    my @values = map { $_->[1] } grep { lc $_->[0] eq lc $name }
                 @{ $res->{headers} || [] };
    return @values ? join(', ', @values) : undef;
}

# Public helper: one request to the running nginx.
sub http_request {
    my ($method, $uri, $headers, $body) = @_;
    my $text = join '', map { "$_: $headers->{$_}\n" } sort keys %{ $headers || {} };
    my ($bytes) = build_http_request("$method $uri\n" . (defined $body ? $body : ''),
                                     $text, 0);
    my $res = _http_exchange(pieces => [$bytes], method => $method,
                             timeout => $DefaultTimeout);
    my %h;
    for my $hdr (@{ $res->{headers} || [] }) {
        my $k = lc $hdr->[0];
        $h{$k} = exists $h{$k} ? "$h{$k}, $hdr->[1]" : $hdr->[1];
    }
    return ($res->{status}, \%h, $res->{body});
}

# ---------------------------------------------------------------------------
# Response checks

# Value of a per-request section for request $i: arrays are indexed,
# scalars apply to every request.
sub _per_request {
    my ($value, $i) = @_;
    return ref $value eq 'ARRAY' ? $value->[$i] : $value;
}

sub _check_response {
    my ($block, $name, $rep, $i, $res) = @_;
    my $suffix = "(repeated req $rep, req $i)";
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    # Status code (always checked).
    my $expected = _per_request(_section($block, 'error_code'), $i);
    $expected = 200 unless defined $expected && $expected =~ /\S/;
    $expected =~ s/^\s+|\s+$//g;
    if ($res->{error}) {
        Test::More::fail("$name - status code ok $suffix");
        Test::More::diag("ERROR: $res->{error} - $name $suffix");
    } else {
        Test::More::is($res->{status}, $expected, "$name - status code ok $suffix");
    }

    # Headers.
    my $headers = _per_request(_section($block, 'response_headers'), $i);
    _check_headers($res, $headers, $name, $suffix, 0) if defined $headers;
    my $like = _per_request(_section($block, 'response_headers_like'), $i);
    _check_headers($res, $like, $name, $suffix, 1) if defined $like;

    # Body.
    my $body = defined $res->{body} ? $res->{body} : '';
    if (_has_section($block, 'response_body')) {
        my $want = _per_request(_section($block, 'response_body'), $i);
        if (defined $want) {
            _compare_text($body, $want,
                          "$name - response_body - response is expected $suffix");
        }
    }
    for my $kind (qw(response_body_like response_body_unlike)) {
        next unless _has_section($block, $kind);
        my $pat = _per_request(_section($block, $kind), $i);
        next unless defined $pat;
        unless (ref $pat eq 'Regexp') {
            $pat =~ s/\n\z// unless _section_is_eval($block, $kind);
            $pat = qr/$pat/s;
        }
        my $test = "$name - $kind - response is expected $suffix";
        if ($kind eq 'response_body_like') {
            Test::More::like($body, $pat, $test);
        } else {
            Test::More::unlike($body, $pat, $test);
        }
    }
    return;
}

sub _check_headers {
    my ($res, $spec, $name, $suffix, $is_like) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    for my $line (split /\n/, $spec) {
        next unless $line =~ /\S/;
        my ($key, $want);
        if ($line =~ /^\s*!\s*([^:\s]+)\s*:?\s*$/) {
            $key = $1;
        } elsif ($line =~ /^\s*([^:\s]+)\s*:\s*(.*?)\s*$/) {
            ($key, $want) = ($1, $2);
            undef $want if $want eq '';
        } else {
            Test::More::fail("$name - header line '$line' is valid $suffix");
            next;
        }
        my $got = _header_value($res, $key);
        if (!defined $want) {
            Test::More::ok(!defined $got, "$name - header $key is absent $suffix")
                or Test::More::diag("header $key: '$got' is present");
        } elsif ($is_like) {
            Test::More::like(defined $got ? $got : '', qr/^(?:$want)$/,
                             "$name - header $key like ok $suffix");
        } else {
            Test::More::is($got, $want, "$name - header $key ok $suffix");
        }
    }
    return;
}

# Exact comparison with the most useful diagnostics.
sub _compare_text {
    my ($got, $expected, $test) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    if ($got eq $expected) {
        return Test::More::pass($test);
    }
    if (!$ENV{TEST_SHOW_NO_DIFFS}
        && ($got =~ /\n./s || $expected =~ /\n./s))
    {
        Test::More::ok(0, $test);
        Test::More::diag(Text::Diff::diff(\$expected, \$got, {
            STYLE => 'Unified', FILENAME_A => 'expected', FILENAME_B => 'got',
        }));
        return 0;
    }
    return $NoLongString ? Test::More::is($got, $expected, $test)
                         : Test::LongString::is_string($got, $expected, $test);
}

# ---------------------------------------------------------------------------
# Error log checks

# Section value -> list of patterns (strings or Regexp objects).
sub _patterns {
    my ($value) = @_;
    return () unless defined $value;
    return map { _patterns($_) } @$value if ref $value eq 'ARRAY';
    return ($value) if ref $value eq 'Regexp';
    return grep { /\S/ } split /\n/, $value;
}

sub _line_matches {
    my ($line, $pat) = @_;
    return ref $pat eq 'Regexp' ? $line =~ $pat : index($line, $pat) >= 0;
}

sub _show_pattern {
    my ($pat) = @_;
    return ref $pat eq 'Regexp' ? "$pat" : $pat;
}

sub _check_error_log {
    my ($block, $name, $rep, $log, $must_die) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my @lines = split /\n/, $log;
    my $suffix = "(req $rep)";

    my @expected = _patterns(_section($block, 'error_log'));
    for my $pat (@expected) {
        my $found = grep { _line_matches($_, $pat) } @lines;
        Test::More::ok($found, "$name - pattern \"" . _show_pattern($pat)
                               . "\" matches a line in error.log $suffix")
            or Test::More::diag(_log_summary(\@lines));
    }

    for my $pat (_patterns(_section($block, 'no_error_log'))) {
        my @found = grep { _line_matches($_, $pat) } @lines;
        Test::More::ok(!@found, "$name - pattern \"" . _show_pattern($pat)
                                . "\" does not match a line in error.log $suffix")
            or Test::More::diag("matching lines:\n"
                                . _tail(join("\n", @found), 10));
    }

    if (_has_section($block, 'grep_error_log')) {
        _check_grep_error_log($block, $name, $rep, \@lines);
    }

    my @severe = grep { $_ =~ $SevereLine } @lines;
    @severe = grep {
        my $line = $_;
        !($must_die && $line =~ /\[emerg\]/)
            && !grep { _line_matches($line, $_) } @expected;
    } @severe;
    if (@severe) {
        Test::More::fail("$name - no [alert], [crit] or [emerg] in error.log "
                         . $suffix);
        Test::More::diag("unexpected lines (add them to --- error_log if "
                         . "they are expected):\n" . _tail(join("\n", @severe), 10));
    }
    return;
}

# Diagnostic for a missing error_log pattern: the last non-debug lines.
sub _log_summary {
    my ($lines) = @_;
    my @useful = grep { !/ \[debug\] / } @$lines;
    return "error log of this block: " . scalar(@$lines) . " lines, "
        . scalar(@useful) . " not at debug level; the last of those:\n"
        . _tail(join("\n", @useful), 15)
        . "(full log: " . error_log_path() . ")";
}

sub _check_grep_error_log {
    my ($block, $name, $rep, $lines) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $pat = _section($block, 'grep_error_log');
    unless (ref $pat eq 'Regexp') {
        $pat = '' unless defined $pat;
        $pat =~ s/\n\z//;
    }
    my $out = '';
    for my $line (@$lines) {
        if (ref $pat eq 'Regexp') {
            while ($line =~ /$pat/g) {
                $out .= "$&\n";
                last if length($&) == 0;
            }
        } elsif (length $pat) {
            my $pos = 0;
            while ((my $at = index $line, $pat, $pos) >= 0) {
                $out .= "$pat\n";
                $pos = $at + length $pat;
            }
        }
    }

    return unless _has_section($block, 'grep_error_log_out');
    my $want = _section($block, 'grep_error_log_out');
    if (ref $want eq 'ARRAY') {
        $want = $rep <= $#$want ? $want->[$rep] : $want->[-1];
    }
    $want = '' unless defined $want;
    my $test = "$name - grep_error_log_out (req $rep)";
    if (ref $want eq 'Regexp') {
        Test::More::like($out, $want, $test);
    } else {
        _compare_text($out, $want, $test);
    }
    return;
}

# ---------------------------------------------------------------------------
# Test::Base filters.  Test::Base picks this class up by name
# (<default class>::Filter).  Only 'eval' is changed: the code runs in
# package main, so that functions and variables of the test file (and of
# modules it imports) are visible, and an error aborts the test file with
# the block's name instead of silently becoming the section's value.

package Test::Nginx::Socket::Filter;

our @ISA = ('Test::Base::Filter');

sub eval {
    my $self = shift;
    $self->assert_scalar(@_);
    my $code  = shift;
    my $block = $self->current_block;
    (my $where = 'eval in ' . ($block ? $block->name : 'a block'))
        =~ s/["\n]//g;
    my @result = CORE::eval("package main;\n#line 1 \"$where\"\n$code");
    die "Test::Nginx: $where failed: $@" if $@;
    return @result;
}

1;

