package AcsTest::DistantHub;

# A Notification Hubs stand-in that answers at a distance: t/lib/distant-hub.mjs
# (one Node process) started, watched and stopped from a test.  For the push
# engine's tests and benchmarks: round trip (delay, jitter, connect delay),
# HTTP/2 and HTTP/1.1, throttling, failure modes, counters.  See the POD at the
# end of this file, and the comment at the top of distant-hub.mjs.
#
#   my $nh = AcsTest::DistantHub->start(name => '360-hub', delay => 150);
#   acs_notify_hub main ${\ $nh->hub_conf} http2=on;
#   ... pushes ...
#   my $s = $nh->stats;    # $s->{by_status}{201}, $s->{max_in_flight}, ...
#   $nh->mode(throttle => 100, retry_after => 1);
#   $nh->stop;

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Spec;
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP ();
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Scalar::Util qw(refaddr weaken);
use Time::HiRes ();

use AcsTest::FakeNH ();

our $SCRIPT = abs_path(File::Spec->catfile(dirname(abs_path(__FILE__)), '..',
                                           'distant-hub.mjs'));
our $DOMAIN = 'servicebus.windows.net';

# flags for node before the script (none: --max-semi-space-size=64 was tried
# and did not lower the CPU per push measurably)
our @NODE_FLAGS = ();

my $JSON = JSON::PP->new->utf8->canonical;
my %LIVE;

# option => [command-line flag, kind]
my %OPTION = (
    delay         => ['--delay', 'int'],
    jitter        => ['--jitter', 'int'],
    connect_delay => ['--connect-delay', 'int'],
    throttle      => ['--throttle', 'int'],
    retry_after   => ['--retry-after', 'int'],
    fail          => ['--fail', 'int'],
    max_streams   => ['--max-streams', 'int'],
    h1            => ['--h1', 'flag'],
    hang          => ['--hang', 'flag'],
    refuse        => ['--refuse', 'flag'],
    rights        => ['--rights', 'str'],
);
my %MODE_BOOL = (hang => 1, refuse => 1);
my %MODE_KEY = map { $_ => 1 }
    qw(delay jitter connect_delay throttle retry_after fail hang refuse);

sub start {
    my ($class, %o) = @_;
    my $name = delete $o{name};
    croak 'start(name => NAME, ...)' unless defined $name && length $name;
    my $dir = delete $o{dir} // File::Spec->rel2abs(
        ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . "/$name");
    remove_tree($dir);
    make_path($dir);
    $dir = abs_path($dir);
    my $tls = AcsTest::FakeNH::setup_ca(delete $o{ca_dir} // "$dir/ca");

    my $ns = lc(delete $o{namespace} // 'acs-test-ns');
    my @hubs = @{ delete $o{hubs} // [ delete $o{hub} // 'acs-push' ] };
    delete $o{hub};
    my $key_name = delete $o{key_name} // 'DefaultFullSharedAccessSignature';
    my $key = delete $o{key} // encode_base64(_random_bytes(32), '');
    my $journal = delete $o{journal} ? "$dir/journal.jsonl" : undef;
    my $port = delete $o{port} // 0;
    # another loopback address: libcurl keeps its connections per connect_to
    # address, so two stand-ins on one address would share them
    my $address = delete $o{address} // '127.0.0.1';
    # refusing from the start, it listens later: on a port chosen now
    $port ||= _free_port() if $o{refuse};
    my $node = delete $o{node} // $ENV{NODE} || 'node';
    my @flags = @{ delete $o{node_flags} // \@NODE_FLAGS };

    my @args = ('--cert', $tls->{cert}, '--cert-key', $tls->{key},
                '--namespace', $ns, (map { ('--hub', $_) } @hubs),
                '--key-name', $key_name, '--key', $key,
                '--address', $address,
                '--port', $port, '--ready-file', "$dir/ready.json",
                '--parent-pid', $$);
    push @args, '--journal', $journal if $journal;
    for my $k (sort keys %o) {
        my $opt = $OPTION{$k} or croak "AcsTest::DistantHub: unknown option '$k'";
        my ($flag, $kind) = @$opt;
        next unless defined $o{$k};
        if ($kind eq 'flag') {
            push @args, $flag if $o{$k};
        } else {
            croak "$k must be an integer" if $kind eq 'int' && $o{$k} !~ /^\d+\z/;
            push @args, $flag, $o{$k};
        }
    }

    my $log = "$dir/distant-hub.log";
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>>', $log);
        open(STDERR, '>>&', \*STDOUT);
        { no warnings 'exec'; exec { $node } $node, @flags, $SCRIPT, @args; }
        print STDERR "exec $node: $!\n";
        POSIX::_exit(127);
    }
    my $self = bless {
        pid => $pid, owner => $$, dir => $dir, tls => $tls, namespace => $ns,
        address => $address,
        host => "$ns.$DOMAIN", hubs => \@hubs, key_name => $key_name,
        key => $key, journal => $journal, log => $log,
        http => HTTP::Tiny->new(timeout => 30, keep_alive => 0),
    }, $class;
    my $end = Time::HiRes::time() + 30;
    while (!-e "$dir/ready.json") {
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            delete $self->{pid};
            croak "AcsTest::DistantHub: $node $SCRIPT exited ($?): " . _tail($log);
        }
        if (Time::HiRes::time() > $end) {
            $self->stop;
            croak "AcsTest::DistantHub: not listening after 30 s: " . _tail($log);
        }
        Time::HiRes::sleep(0.02);
    }
    my $ready = $JSON->decode(_slurp("$dir/ready.json"));
    @$self{qw(port control_port)} = @$ready{qw(port control_port)};
    $LIVE{ refaddr $self } = $self;
    weaken $LIVE{ refaddr $self };
    return $self;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid};
    return unless $pid && $self->{owner} && $self->{owner} == $$;
    delete $LIVE{ refaddr $self };
    kill 'TERM', $pid;
    my $end = Time::HiRes::time() + 5;
    while (waitpid($pid, POSIX::WNOHANG()) == 0) {
        if (Time::HiRes::time() > $end) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            last;
        }
        Time::HiRes::sleep(0.02);
    }
    return 1;
}

sub DESTROY { $_[0]->stop }

END { $_ && $_->stop for values %LIVE }

# accessors
sub pid          { $_[0]{pid} }
sub port         { $_[0]{port} }
sub control_port { $_[0]{control_port} }
sub dir          { $_[0]{dir} }
sub ca           { $_[0]{tls}{ca} }
sub other_ca     { $_[0]{tls}{other_ca} }
sub cert         { $_[0]{tls}{cert} }
sub log_file     { $_[0]{log} }
sub namespace    { $_[0]{namespace} }
sub host         { $_[0]{host} }
sub hub          { $_[0]{hubs}[0] }
sub hubs         { @{ $_[0]{hubs} } }
sub key_name     { $_[0]{key_name} }
sub key          { $_[0]{key} }
sub connect_to   { "$_[0]{address}:$_[0]{port}" }
sub base_url     { "https://$_[0]{host}" }

# curl --connect-to HOST:443:127.0.0.1:PORT
sub curl_connect_to { "$_[0]{host}:443:$_[0]{address}:$_[0]{port}" }

sub connection_string {
    my ($self) = @_;
    return "Endpoint=sb://$self->{host}/;SharedAccessKeyName=$self->{key_name};"
        . "SharedAccessKey=$self->{key}";
}

# the parameters of an acs_notify_hub directive that point it here
sub hub_conf {
    my ($self, $hub) = @_;
    return '"connection_string=' . $self->connection_string . '" hub=' . ($hub // $self->hub)
        . " connect_to=$self->{address}:$self->{port} ca_file=$self->{tls}{ca}";
}

sub send_path {
    my ($self, $hub) = @_;
    return '/' . ($hub // $self->hub) . '/messages/?api-version=2020-06&direct';
}

sub tag_send_path {
    my ($self, $hub) = @_;
    return '/' . ($hub // $self->hub) . '/messages/?api-version=2020-06';
}

# an Authorization value (hub, key_name, key, uri, se override)
sub token {
    my ($self, %o) = @_;
    my $uri = $o{uri} // "https://$self->{host}/" . ($o{hub} // $self->hub);
    return AcsTest::FakeNH::sas_token($o{key_name} // $self->{key_name},
                                      $o{key} // $self->{key}, $uri,
                                      $o{se} // time + 3600);
}

# ---------------------------------------------------------------------------
# control port

sub _control {
    my ($self, $method, $path, $body) = @_;
    my $r = $self->{http}->request($method,
        "http://127.0.0.1:$self->{control_port}$path",
        defined $body ? { content => $body,
                          headers => { 'content-type' => 'application/json' } } : {});
    my $j = eval { $JSON->decode($r->{content}) };
    croak "AcsTest::DistantHub: $method $path: $r->{status} "
        . ($j && $j->{error} ? $j->{error} : $r->{content})
        unless $r->{success} && $j;
    return $j;
}

sub stats { $_[0]->_control(GET => '/stats') }
sub reset { $_[0]->_control(POST => '/reset') }
sub drop  { $_[0]->_control(POST => '/drop')->{dropped} }

# mode() answers the current mode; mode(%changes) changes it and answers it
sub mode {
    my ($self, %c) = @_;
    return $self->_control(GET => '/mode') unless %c;
    my %j;
    for my $k (keys %c) {
        croak "AcsTest::DistantHub: unknown mode key '$k'" unless $MODE_KEY{$k};
        my $v = $c{$k};
        $j{$k} = !defined $v       ? undef
               : $MODE_BOOL{$k}    ? ($v ? JSON::PP::true : JSON::PP::false)
               :                     0 + $v;
    }
    return $self->_control(POST => '/mode', $JSON->encode(\%j));
}

# the journal's entries (start with journal => 1)
sub journal {
    my ($self) = @_;
    croak 'AcsTest::DistantHub: started without journal => 1' unless $self->{journal};
    my @r;
    open(my $fh, '<:raw', $self->{journal}) or return;
    while (my $l = <$fh>) {
        last unless $l =~ /\n\z/;
        push @r, $JSON->decode($l);
    }
    return @r;
}

# polls stats until $cond->($stats) is true or $timeout (10) seconds pass
sub wait_stats {
    my ($self, $cond, $timeout) = @_;
    my $end = Time::HiRes::time() + ($timeout // 10);
    while (1) {
        my $s = $self->stats;
        return $s if $cond->($s) || Time::HiRes::time() >= $end;
        Time::HiRes::sleep(0.05);
    }
}

# ---------------------------------------------------------------------------

sub _random_bytes {
    my ($n) = @_;
    my $b = '';
    if (open(my $fh, '<:raw', '/dev/urandom')) {
        read($fh, $b, $n);
    }
    $b .= chr(int rand 256) while length $b < $n;
    return $b;
}

sub _free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1) or croak "free port: $!";
    my $p = $s->sockport;
    close $s;
    return $p;
}

sub _slurp {
    my ($f) = @_;
    open(my $fh, '<:raw', $f) or croak "$f: $!";
    local $/;
    return scalar <$fh>;
}

sub _tail {
    my ($f) = @_;
    my $t = eval { _slurp($f) } // '';
    $t = substr($t, -2000) if length $t > 2000;
    return $t eq '' ? "(nothing in $f)" : $t;
}

1;

__END__

=encoding utf8

=head1 NAME

AcsTest::DistantHub - a Notification Hubs stand-in at a distance (Node), for the push engine's tests and benchmarks

=head1 SYNOPSIS

    use AcsTest::DistantHub;

    my $nh = AcsTest::DistantHub->start(
        name     => '360-hub',        # t/servroot/360-hub: certificates, log, journal
        hubs     => ['acs-push', 'acs-voip'],
        delay    => 150, jitter => 20,  # the round trip, in ms
        journal  => 1,                  # one JSON line per request (off by default)
    );

    # an nginx configuration pointed at it
    my $conf = "acs_notify_hub main ${\ $nh->hub_conf} http2=on max_connections=16;";
    #   = acs_notify_hub main "connection_string=Endpoint=sb://acs-test-ns...;SharedAccessKey=..."
    #       hub=acs-push connect_to=127.0.0.1:PORT ca_file=.../ca/ca.pem http2=on ...

    my $s = $nh->stats;               # decoded GET /stats
    $s->{by_status}{201};  $s->{by_protocol}{h2};  $s->{max_in_flight};
    $s->{connections}{opened};  $s->{connections}{max_open};  $s->{timeline};

    $nh->mode(throttle => 200, retry_after => 1);   # at run time
    $nh->mode(fail => 503);  $nh->mode(fail => undef);
    $nh->mode(refuse => 1);  $nh->mode(refuse => 0);
    $nh->reset;                       # zero the counters
    my @j = $nh->journal;             # hashrefs, with journal => 1
    $nh->stop;                        # also done by DESTROY and END

=head1 WHICH STAND-IN

L<AcsTest::FakeNH> (Perl) is the strict one: everything the module sends,
installations and tag/template fan-out included, checked and journaled in
detail; HTTP/1.1 only, one process per connection, slow.  L<AcsTest::Sink> is
a stock nginx that answers 201 to anything (transport only, fast, HTTP/2).
This one stands between them: the same validation of sends as FakeNH (no
installations: a tag send is validated and reaches nobody), fast enough for
benchmarks (one Node process: about 17,000 HTTP/2 or 13,000-16,000
HTTP/1.1 pushes/s per core, see t/README.md), and it answers I<at a
distance>: each answer waits C<delay> ms (+ up to C<jitter>) after the
request's body was read, as NH across a region does; it throttles (429 past
C<throttle> requests in flight), fails, hangs or refuses on demand, and counts
connections, protocols and requests in flight.

=head1 METHODS

=over

=item start(name => NAME, %options)

Creates the directory (C<dir>, default C<$TEST_NGINX_SERVROOT/NAME> or
C<t/servroot/NAME>, emptied first: give it a name of its own, not the nginx
server's), a test CA and a certificate for C<*.servicebus.windows.net>
(L<AcsTest::FakeNH/setup_ca>, in C<ca_dir>, default C<dir/ca>), starts
C<$ENV{NODE} || 'node'> (C<node> overrides) on F<t/lib/distant-hub.mjs> with
C<@NODE_FLAGS> (C<node_flags> overrides), and returns once it listens (30 s
at most; croaks with the log's tail otherwise).  The process stops by itself
when the test process is gone.

Options: C<namespace> (C<acs-test-ns>), C<hub> or C<hubs> (C<acs-push>),
C<key_name> (C<DefaultFullSharedAccessSignature>), C<key> (random), C<rights>
(C<manage>; C<send>, C<listen>, a comma list), C<port> (0: a free one),
C<h1> (ALPN offers HTTP/1.1 only), C<max_streams> (100), C<journal> (true:
F<dir/journal.jsonl>), and the initial mode: C<delay>, C<jitter>,
C<connect_delay> (ms), C<throttle> (requests in flight), C<retry_after> (s),
C<fail> (a status), C<hang>, C<refuse>.

=item stop

TERM, then KILL after 5 s.  Only in the process that started it.

=item port, control_port, pid, dir, ca, other_ca, cert, log_file, namespace, host, hub, hubs, key_name, key

Accessors.  C<host> is C<{namespace}.servicebus.windows.net>.

=item connection_string

C<Endpoint=sb://HOST/;SharedAccessKeyName=...;SharedAccessKey=...>: the key
the stand-in checks signatures with.

=item hub_conf([$hub])

The parameters of an C<acs_notify_hub> directive that point it here:
C<"connection_string=..." hub=HUB connect_to=127.0.0.1:PORT ca_file=CA>
(add C<http2=on>, C<max_connections=>, ... after it).

=item connect_to, curl_connect_to, base_url, send_path([$hub]), tag_send_path([$hub]), token(%o)

C<127.0.0.1:PORT>; C<HOST:443:127.0.0.1:PORT> for curl's C<--connect-to>;
C<https://HOST>; the paths of a direct and a tag send; a valid
C<Authorization> value (C<hub>, C<uri>, C<key_name>, C<key>, C<se>
override).

=item stats

C<GET /stats>, decoded: C<requests>, C<by_status> (C<< {201 => n, ...} >>),
C<by_protocol> (C<h1>, C<h2>), C<connections> (C<opened>, C<open>,
C<max_open>, C<by_protocol>, C<tls_failures>), C<in_flight>,
C<max_in_flight>, C<throttled>, C<sent_429>, C<hung>, C<aborted>, C<errors>
(exceptions the script caught and logged: a bug), C<cpu>
(C<user_ms>, C<system_ms>), C<mode>, C<timeline> (per second for the last 120
s: C<t>, C<conns>, C<requests>, C<answered>, C<throttled>, C<inflight_max>,
C<cpu_ms>, C<lag_ms>; the last one partial).

=item wait_stats($cond, $timeout)

Polls C<stats> until C<< $cond->($stats) >> is true or C<$timeout> (10) s
passed; returns the last stats.

=item mode, mode(%changes)

C<GET /mode>, or C<POST /mode> with the changes (C<delay>, C<jitter>,
C<connect_delay>, C<throttle>, C<retry_after>, C<fail>, C<hang>, C<refuse>;
C<undef> clears C<fail> and C<retry_after>); returns the mode.  C<refuse>
closes the listening socket and drops every open connection; turning it off
listens again on the same port before C<mode> returns.

=item reset, drop

Zero the counters (C<POST /reset>); close every open connection at once
(C<POST /drop>, returns how many).

=item journal

The journal's entries (with C<< journal => 1 >>): C<time>, C<proto>,
C<conn>, C<req>, C<hub>, C<op>, C<handle> or C<tags>, C<format>, C<status>
(0 when never answered), C<delay_ms>, C<detail>, C<tracking_id>,
C<location>, C<hang>, C<aborted>.

=back

=head1 NOT LIKE THE REAL SERVICE

See the comment at the top of F<t/lib/distant-hub.mjs>: no installations (a
tag send reaches nobody), the 429 of C<throttle> is immediate, and the
distance is a wait in the server, not on the wire (a TLS handshake pays only
C<connect_delay>).

=cut
