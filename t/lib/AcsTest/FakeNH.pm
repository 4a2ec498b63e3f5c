package AcsTest::FakeNH;

# A strict stand-in for the Azure Notification Hubs data plane (direct send)
# over HTTPS, for tests.  See the POD at the end of this file.
#
#   my $nh = AcsTest::FakeNH->start(dir => $dir, hub => 'acs-push',
#                                   key => 'c2VjcmV0...', rights => 'send');
#   ... point the client at 127.0.0.1:$nh->port, trusting $nh->ca ...
#   my @req = $nh->wait_requests(1, 5);
#   $nh->stop;

use strict;
use warnings;

use B ();
use Carp qw(croak);
use Cwd qw(abs_path);
use Digest::SHA qw(hmac_sha256 sha1_hex);
use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use Fcntl qw(:flock SEEK_SET);
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use IO::Socket::SSL;
use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX ();
use Scalar::Util qw(weaken refaddr);
use Socket qw(SOL_SOCKET SO_LINGER IPPROTO_TCP TCP_NODELAY);
use Time::HiRes ();

our $VERSION = '0.01';

# ---------------------------------------------------------------------------
# protocol constants (PROTOCOLS.md §3)

our $DOMAIN        = 'servicebus.windows.net';
our $API_VERSION   = '2020-06';
our @API_VERSIONS  = qw(2015-01 2015-04 2015-08 2016-07 2017-04 2020-06);
our %KNOWN_API     = map { $_ => 1 } @API_VERSIONS;

# format => payload limit in bytes
our %FORMATS = (
    apple   => 4096,
    fcmv1   => 4096,
    gcm     => 4096,
    browser => 4096,
    adm     => 6144,
    baidu   => 4096,
    xiaomi  => 4096,
    windows => 5120,
);
our $MAX_REQUEST_BODY = 65536;     # NH: request ≤ 64 KB, else 413
our $MAX_READ_BODY    = 1 << 20;   # larger bodies are not even read
our $MAX_HEAD         = 32768;     # request line + headers

our %PUSH_TYPES = map { $_ => 1 }
    qw(alert background voip complication fileprovider mdm location
       liveactivity pushtotalk);
our %WNS_TYPES = map { $_ => 1 } qw(wns/toast wns/tile wns/badge wns/raw);

# Failure injection by device-handle prefix (case-insensitive), longest
# first.  times => N: only the first N requests for that exact handle fail.
our @INJECT = (
    [ '05031' => { status => 503, times => 1 } ],
    [ '04291' => { status => 429, times => 1, retry_after => 2 } ],
    [ '0400'  => { status => 400 } ],
    [ '0403'  => { status => 403, empty => 1 } ],
    [ '0404'  => { status => 404 } ],
    [ '0408'  => { status => 408, close => 1 } ],
    [ '0410'  => { status => 410 } ],
    [ '0413'  => { status => 413 } ],
    [ '0429'  => { status => 429, retry_after => 1 } ],
    [ '0500'  => { status => 500 } ],
    [ '0503'  => { status => 503 } ],
    [ '0777'  => { action => 'hang' } ],
    [ '0666'  => { action => 'reset' } ],
);

our %REASON = (
    100 => 'Continue', 200 => 'OK', 201 => 'Created', 204 => 'No Content',
    400 => 'Bad Request', 401 => 'Unauthorized', 403 => 'Forbidden',
    404 => 'Not Found', 405 => 'Method Not Allowed', 408 => 'Request Timeout',
    409 => 'Conflict', 410 => 'Gone', 411 => 'Length Required',
    412 => 'Precondition Failed', 413 => 'Request Entity Too Large',
    415 => 'Unsupported Media Type', 417 => 'Expectation Failed',
    429 => 'Too Many Requests', 431 => 'Request Header Fields Too Large',
    500 => 'Internal Server Error', 501 => 'Not Implemented',
    502 => 'Bad Gateway', 503 => 'Service Unavailable',
    504 => 'Gateway Timeout', 505 => 'HTTP Version Not Supported',
);

my $JSON_IN  = JSON::PP->new->utf8->allow_nonref(0);
my $JSON_OUT = JSON::PP->new->utf8->canonical;
my $OPENSSL  = $ENV{OPENSSL} || 'openssl';

# ---------------------------------------------------------------------------
# SAS tokens (PROTOCOLS.md §3.2)

# percent-encode everything but RFC 3986 unreserved characters (upper-case hex)
sub pct_encode {
    my ($s) = @_;
    utf8::encode($s) if utf8::is_utf8($s);
    $s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

# percent-decode; '+' becomes a space, as .NET's UrlDecode does
sub pct_decode {
    my ($s) = @_;
    return undef unless defined $s;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    return $s;
}

# base64(HMAC-SHA256(key = UTF-8 bytes of the key text, sr as sent . "\n" . se))
sub sas_signature {
    my ($key_text, $sr_encoded, $se) = @_;
    croak 'sas_signature(key, sr, se)' unless defined $key_text && defined $sr_encoded && defined $se;
    my $k = $key_text;
    utf8::encode($k);
    my $m = "$sr_encoded\n$se";
    utf8::encode($m);
    return encode_base64(hmac_sha256($m, $k), '');
}

# the full Authorization header value for a resource URI
sub sas_token {
    my ($key_name, $key_text, $uri, $se) = @_;
    croak 'sas_token(key_name, key, uri, se)' unless defined $key_name && defined $uri;
    $se //= time + 3600;
    my $sr  = pct_encode(lc $uri);
    my $sig = sas_signature($key_text, $sr, $se);
    return 'SharedAccessSignature sr=' . $sr . '&sig=' . pct_encode($sig)
        . '&se=' . $se . '&skn=' . pct_encode($key_name);
}

# parse a connection string (PROTOCOLS.md §3.1) into a hashref
sub parse_connection_string {
    my ($cs) = @_;
    my %f;
    for my $part (split /;/, $cs // '') {
        $part =~ s/^\s+|\s+$//g;
        next if $part eq '';
        my ($k, $v) = split /=/, $part, 2;
        return undef unless defined $v;
        $f{$k} = $v;
    }
    return undef unless defined $f{Endpoint} && defined $f{SharedAccessKeyName}
        && defined $f{SharedAccessKey};
    return \%f;
}

# ---------------------------------------------------------------------------
# test CA and server certificate

my @CA_FILES = qw(ca.pem ca.key server.pem server.key other-ca.pem other-ca.key);

# setup_ca($dir): create once (safe under concurrent callers) the files
# ca.pem ca.key server.pem server.key other-ca.pem other-ca.key in $dir.
sub setup_ca {
    my ($dir) = @_;
    croak 'setup_ca: directory required' unless defined $dir && length $dir;
    make_path($dir);
    $dir = abs_path($dir);
    my $marker = "$dir/.fake-nh-ca-complete";
    unless (-e $marker) {
        my $lockf = "$dir/.fake-nh-ca.lock";
        open(my $lock, '>>', $lockf) or croak "open $lockf: $!";
        flock($lock, LOCK_EX) or croak "flock $lockf: $!";
        unless (-e $marker) {
            my $tmp = tempdir('.fake-nh-ca-XXXXXX', DIR => $dir, CLEANUP => 0);
            my $ok  = eval { _make_ca($tmp); 1 };
            my $err = $@;
            if ($ok) {
                for my $f (@CA_FILES) {
                    rename("$tmp/$f", "$dir/$f")
                        or do { $err = "rename $f: $!"; $ok = 0; last };
                }
            }
            remove_tree($tmp);
            croak "AcsTest::FakeNH::setup_ca($dir) failed: $err" unless $ok;
            _spew($marker, "ok\n");
        }
        close $lock;
    }
    return {
        ca         => "$dir/ca.pem",
        ca_key     => "$dir/ca.key",
        cert       => "$dir/server.pem",
        key        => "$dir/server.key",
        other_ca   => "$dir/other-ca.pem",
        other_key  => "$dir/other-ca.key",
    };
}

sub _make_ca {
    my ($d) = @_;
    my @ca_ext = ('-addext', 'basicConstraints=critical,CA:TRUE',
                  '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    for my $c (['ca', 'AcsTest Fake Notification Hubs CA'],
               ['other-ca', 'AcsTest Unrelated CA']) {
        _run($OPENSSL, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
             '-keyout', "$d/$c->[0].key", '-out', "$d/$c->[0].pem",
             '-days', '3650', '-sha256', '-subj', "/O=AcsTest/CN=$c->[1]", @ca_ext);
    }
    _run($OPENSSL, 'req', '-new', '-newkey', 'rsa:2048', '-nodes',
         '-keyout', "$d/server.key", '-out', "$d/server.csr",
         '-subj', "/O=AcsTest/CN=*.$DOMAIN");
    _spew("$d/server.ext", join("\n",
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid,issuer",
        "subjectAltName=DNS:*.$DOMAIN,DNS:localhost,IP:127.0.0.1",
        ''));
    my $serial = '0x' . unpack('H*', _random_bytes(12));
    $serial =~ s/^0x[89a-f]/0x1/;    # positive
    _run($OPENSSL, 'x509', '-req', '-in', "$d/server.csr", '-CA', "$d/ca.pem",
         '-CAkey', "$d/ca.key", '-set_serial', $serial, '-days', '825',
         '-sha256', '-extfile', "$d/server.ext", '-out', "$d/server.pem");
    chmod 0600, "$d/ca.key", "$d/server.key", "$d/other-ca.key";
    chmod 0644, "$d/server.key";    # nginx workers / other users may read it in tests
}

sub _run {
    my @cmd = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', '/dev/null');
        open(STDERR, '>', '/dev/null');
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    waitpid($pid, 0);
    die "command failed ($?): @cmd\n" if $?;
}

# ---------------------------------------------------------------------------
# control API (the test process)

my %LIVE;    # refaddr => weak ref to every started server

sub _parse_rights {
    my ($r) = @_;
    my %r;
    for my $w (split /[\s,|]+/, lc($r // 'manage')) {
        next if $w eq '';
        croak "unknown right '$w' (send, listen, manage)" unless $w =~ /^(?:send|listen|manage)$/;
        $r{$w} = 1;
    }
    @r{qw(send listen)} = (1, 1) if $r{manage};
    croak 'no rights given' unless %r;
    return \%r;
}

sub _rights_from_name {
    my ($name, $default) = @_;
    return 'manage' if $name =~ /manage|full/i;
    my @r = grep { $name =~ /$_/i } qw(send listen);
    return @r ? join(',', @r) : $default;
}

sub _random_bytes {
    my ($n) = @_;
    my $b = '';
    if (open(my $fh, '<:raw', '/dev/urandom')) {
        read($fh, $b, $n);
    }
    $b .= chr(int rand 256) while length $b < $n;
    return $b;
}

# the configuration hash shared by start() and run()
sub _config {
    my ($class, %o) = @_;
    croak 'dir => DIR required' unless defined $o{dir} && length $o{dir};
    make_path($o{dir});
    my $dir = abs_path($o{dir});
    my $ns  = lc($o{namespace} // 'acs-test-ns');
    croak "bad namespace '$ns'" unless $ns =~ /^[a-z0-9][a-z0-9-]{0,62}$/;
    my @hubs = @{ $o{hubs} // [ $o{hub} // 'acs-push' ] };
    croak 'at least one hub' unless @hubs;

    my (%keys, $primary);
    my $rights = $o{rights} // 'manage';
    if (defined $o{key} || !$o{keys}) {
        $primary = $o{key_name} // 'DefaultFullSharedAccessSignature';
        my $key  = $o{key} // encode_base64(_random_bytes(32), '');
        $keys{$primary} = { key => $key, rights => _parse_rights($rights), rights_text => $rights };
    }
    if (my $k = $o{keys}) {
        for my $name (sort keys %$k) {
            my $v = $k->{$name};
            my ($key, $r) = ref $v eq 'HASH'  ? ($v->{key}, $v->{rights})
                          : ref $v eq 'ARRAY' ? @$v
                          : ($v, undef);
            croak "keys: no key text for '$name'" unless defined $key && length $key;
            $r //= _rights_from_name($name, $rights);
            $keys{$name} = { key => $key, rights => _parse_rights($r), rights_text => $r };
            $primary //= $name;
        }
    }
    for my $n (keys %keys) {
        croak "key name '$n' longer than 256" if length $n > 256;
        croak "key for '$n' longer than 256" if length $keys{$n}{key} > 256;
    }
    my $tls = setup_ca($o{ca_dir} // $dir);
    return {
        dir          => $dir,
        namespace    => $ns,
        host         => "$ns.$DOMAIN",
        hubs         => { map { lc($_) => $_ } @hubs },
        hub_list     => [@hubs],
        keys         => \%keys,
        primary      => $primary,
        port         => $o{port} // 0,
        tls          => $tls,
        journal      => "$dir/journal.jsonl",
        state        => "$dir/fake-nh-state.json",
        rules        => "$dir/rules.json",
        log          => "$dir/fake-nh.log",
        idle_timeout => $o{idle_timeout} // 120,
        hang_seconds => $o{hang_seconds} // 30,
        max_requests => $o{max_requests} // 0,
        watch_parent => $o{watch_parent},
    };
}

sub start {
    my ($class, %o) = @_;
    my $cfg = $class->_config(%o);
    my $parent = $$;
    $cfg->{watch_parent} = $parent;
    pipe(my $r, my $w) or croak "pipe: $!";
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        close $r;
        setpgrp(0, 0);
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>>', $cfg->{log});
        open(STDERR, '>>&', \*STDOUT);
        STDOUT->autoflush(1);
        STDERR->autoflush(1);
        $w->autoflush(1);
        my $ok = eval {
            _serve($cfg, sub { print {$w} "ready $_[0]\n"; close $w });
            1;
        };
        if (!$ok) {
            my $e = $@;
            $e =~ s/\s+/ /g;
            print {$w} "error $e\n";
            print STDERR "fake-nh: $e\n";
        }
        POSIX::_exit($ok ? 0 : 1);
    }
    close $w;
    my $line = '';
    my $sel  = IO::Select->new($r);
    my $end  = Time::HiRes::time() + 30;
    while ($line !~ /\n/ && (my $left = $end - Time::HiRes::time()) > 0) {
        next unless $sel->can_read($left);
        my $n = sysread($r, $line, 4096, length $line);
        last unless $n;
    }
    close $r;
    my $self = bless { %$cfg, pid => $pid, owner => $parent }, $class;
    if ($line =~ /^ready (\d+)$/) {
        $self->{port} = $1;
    } else {
        $self->stop;
        $line =~ s/^error //;
        croak "AcsTest::FakeNH: server did not start: " . ($line || 'no answer (see ' . $cfg->{log} . ')');
    }
    $LIVE{ refaddr $self } = $self;
    weaken $LIVE{ refaddr $self };
    return $self;
}

# run the server in the foreground (bin script); on_ready => sub { $cfg }
sub run {
    my ($class, %o) = @_;
    my $on_ready = delete $o{on_ready};
    my $cfg = $class->_config(%o);
    my $self = bless { %$cfg }, $class;
    _serve($cfg, sub { $self->{port} = $cfg->{port}; $on_ready->($self) if $on_ready });
}

sub stop {
    my ($self) = @_;
    my $pid = $self->{pid};
    return unless $pid && $self->{owner} && $self->{owner} == $$;
    delete $self->{pid};
    delete $LIVE{ refaddr $self };
    kill 'TERM', -$pid;
    kill 'TERM', $pid;
    my $end = Time::HiRes::time() + 5;
    while (waitpid($pid, POSIX::WNOHANG()) == 0) {
        if (Time::HiRes::time() > $end) {
            kill 'KILL', -$pid;
            kill 'KILL', $pid;
            waitpid($pid, 0);
            last;
        }
        Time::HiRes::sleep(0.02);
    }
    # the server reaps its connection processes; make sure of it anyway
    $end = Time::HiRes::time() + 2;
    while (kill(0, -$pid) && Time::HiRes::time() < $end) {
        Time::HiRes::sleep(0.02);
    }
    kill 'KILL', -$pid if kill 0, -$pid;
    return 1;
}

sub DESTROY { $_[0]->stop }

END { $_ && $_->stop for values %LIVE }

# accessors
sub port      { $_[0]{port} }
sub pid       { $_[0]{pid} }
sub dir       { $_[0]{dir} }
sub ca        { $_[0]{tls}{ca} }
sub other_ca  { $_[0]{tls}{other_ca} }
sub cert      { $_[0]{tls}{cert} }
sub journal   { $_[0]{journal} }
sub log_file  { $_[0]{log} }
sub namespace { $_[0]{namespace} }
sub host      { $_[0]{host} }
sub hub       { $_[0]{hub_list}[0] }
sub hubs      { @{ $_[0]{hub_list} } }
sub key_name  { $_[0]{primary} }
sub key       { $_[0]{keys}{ $_[1] // $_[0]{primary} }{key} }
sub base_url  { "https://$_[0]{host}:$_[0]{port}" }
sub resolve   { "$_[0]{host}:$_[0]{port}:127.0.0.1" }

sub connection_string {
    my ($self, $name) = @_;
    $name //= $self->{primary};
    my $k = $self->{keys}{$name} or croak "no key named '$name'";
    return "Endpoint=sb://$self->{host}/;SharedAccessKeyName=$name;SharedAccessKey=$k->{key}";
}

# the path and query of a direct send
sub send_path {
    my ($self, $hub) = @_;
    return '/' . ($hub // $self->hub) . "/messages/?api-version=$API_VERSION&direct";
}

# an Authorization header value for $hub (default: the first hub)
sub token {
    my ($self, %o) = @_;
    my $name = $o{key_name} // $self->{primary};
    my $key  = $o{key} // $self->{keys}{$name}{key};
    my $uri  = $o{uri} // "https://$self->{host}/" . ($o{hub} // $self->hub);
    return sas_token($name, $key, $uri, $o{se} // time + 3600);
}

sub requests {
    my ($self) = @_;
    my @r;
    if (open(my $fh, '<:raw', $self->{journal})) {
        flock($fh, LOCK_SH);
        while (my $l = <$fh>) {
            last unless $l =~ /\n\z/;
            push @r, $JSON_IN->decode($l);
        }
        close $fh;
    }
    return wantarray ? @r : scalar @r;
}

sub wait_requests {
    my ($self, $n, $timeout) = @_;
    my $end = Time::HiRes::time() + ($timeout // 10);
    my @r;
    while (1) {
        @r = $self->requests;
        last if @r >= $n || Time::HiRes::time() >= $end;
        Time::HiRes::sleep(0.05);
    }
    return wantarray ? @r : scalar @r;
}

sub clear {
    my ($self) = @_;
    open(my $fh, '>>', $self->{journal}) or croak "$self->{journal}: $!";
    flock($fh, LOCK_EX);
    truncate($fh, 0);
    close $fh;
    return 1;
}

# forget the counters of counted failures (05031, 04291, rules with times)
sub reset_counters {
    my ($self) = @_;
    open(my $fh, '>>', $self->{state}) or croak "$self->{state}: $!";
    flock($fh, LOCK_EX);
    truncate($fh, 0);
    close $fh;
    return 1;
}

# set_rules([ {prefix => 'abcd', status => 503, times => 2}, ... ]); set_rules() removes
sub set_rules {
    my ($self, $rules) = @_;
    if (!$rules) {
        unlink $self->{rules};
        return 1;
    }
    $rules = { rules => $rules } if ref $rules eq 'ARRAY';
    my $tmp = "$self->{rules}.tmp.$$";
    _spew($tmp, $JSON_OUT->encode($rules));
    rename($tmp, $self->{rules}) or croak "rename $tmp: $!";
    return 1;
}

sub _spew {
    my ($f, $data) = @_;
    open(my $fh, '>:raw', $f) or die "$f: $!";
    print {$fh} $data;
    close $fh or die "$f: $!";
}

# ---------------------------------------------------------------------------
# the server: an accept loop that forks one process per connection

sub _log {
    my ($cfg, $msg) = @_;
    my @t = gmtime;
    printf STDERR "%04d-%02d-%02dT%02d:%02d:%02dZ [%d] %s\n",
        $t[5] + 1900, $t[4] + 1, @t[3, 2, 1, 0], $$, $msg;
}

sub _serve {
    my ($cfg, $ready) = @_;
    my $ctx = IO::Socket::SSL::SSL_Context->new(
        SSL_server         => 1,
        SSL_cert_file      => $cfg->{tls}{cert},
        SSL_key_file       => $cfg->{tls}{key},
        SSL_version        => 'SSLv23:!SSLv2:!SSLv3:!TLSv1:!TLSv1_1',
        SSL_alpn_protocols => ['http/1.1'],
        SSL_verify_mode    => SSL_VERIFY_NONE,
    ) or die "TLS context: $SSL_ERROR\n";
    my $lsock = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1',
        LocalPort => $cfg->{port},
        Proto     => 'tcp',
        Listen    => 256,
        ReuseAddr => 1,
    ) or die "listen 127.0.0.1:$cfg->{port}: $!\n";
    $cfg->{port} = $lsock->sockport;
    $cfg->{ctx}  = $ctx;

    my $stop = 0;
    local $SIG{TERM} = sub { $stop = 1 };
    local $SIG{INT}  = sub { $stop = 1 };
    local $SIG{HUP}  = sub { $stop = 1 };
    local $SIG{PIPE} = 'IGNORE';
    _log($cfg, "listening on 127.0.0.1:$cfg->{port} for $cfg->{host}");
    $ready->($cfg->{port});

    my (%kids, $conn);
    my $sel = IO::Select->new($lsock);
    while (!$stop) {
        while ((my $k = waitpid(-1, POSIX::WNOHANG())) > 0) { delete $kids{$k} }
        if ($cfg->{watch_parent} && getppid() != $cfg->{watch_parent}) {
            _log($cfg, 'parent went away, stopping');
            last;
        }
        next unless $sel->can_read(0.5);
        my $s = $lsock->accept or next;
        $conn++;
        my $pid = fork;
        if (!defined $pid) {
            _log($cfg, "fork: $!");
            close $s;
            Time::HiRes::sleep(0.05);
            next;
        }
        if (!$pid) {
            $SIG{$_} = 'DEFAULT' for qw(TERM INT HUP);
            close $lsock;
            my $ok = eval { _serve_connection($cfg, $s, $conn); 1 };
            _log($cfg, "conn $conn: $@") unless $ok;
            POSIX::_exit($ok ? 0 : 1);
        }
        $kids{$pid} = 1;
        close $s;
    }
    close $lsock;
    kill 'TERM', keys %kids;
    my $end = Time::HiRes::time() + 3;
    while (%kids && Time::HiRes::time() < $end) {
        my $k = waitpid(-1, POSIX::WNOHANG());
        if ($k > 0) { delete $kids{$k}; next }
        last if $k < 0;
        Time::HiRes::sleep(0.02);
    }
    if (%kids) {
        kill 'KILL', keys %kids;
        waitpid($_, 0) for keys %kids;
    }
    _log($cfg, 'stopped');
}

sub _serve_connection {
    my ($cfg, $sock, $conn) = @_;
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    my $ssl = IO::Socket::SSL->start_SSL($sock,
        SSL_server    => 1,
        SSL_reuse_ctx => $cfg->{ctx},
        Timeout       => 10,
    );
    if (!$ssl) {
        _log($cfg, "conn $conn: TLS handshake failed: " . ($SSL_ERROR || $!));
        return;
    }
    $ssl->blocking(0);
    my $c = {
        ssl  => $ssl,
        buf  => '',
        conn => $conn,
        nreq => 0,
        sni  => scalar $ssl->get_servername,
        alpn => scalar $ssl->alpn_selected,
        tls  => scalar $ssl->get_sslversion,
    };
    while (1) {
        my $req = _read_request($cfg, $c) or last;
        $req->{n} = ++$c->{nreq};
        last unless _handle($cfg, $c, $req);
    }
    $ssl->close(SSL_fast_shutdown => 1);
}

# read into $c->{buf}: >0 bytes read, 0 EOF/error, undef timeout.  The
# socket is non-blocking: readable TCP does not mean a whole TLS record.
sub _fill {
    my ($c, $timeout) = @_;
    my $ssl = $c->{ssl};
    my $end = Time::HiRes::time() + $timeout;
    while (1) {
        my $n = sysread($ssl, $c->{buf}, 65536, length $c->{buf});
        return $n if $n;
        return 0 if defined $n;
        return 0 unless $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
        my $left = $end - Time::HiRes::time();
        return undef if $left <= 0;
        my $sel = IO::Select->new($ssl);
        if ($SSL_ERROR == SSL_WANT_WRITE) { $sel->can_write($left) }
        else                               { $sel->can_read($left) }
    }
}

sub _need {
    my ($c, $len, $timeout) = @_;
    while (length($c->{buf}) < $len) {
        my $n = _fill($c, $timeout);
        return 0 unless $n;
    }
    return 1;
}

sub _write {
    my ($c, $data) = @_;
    my $off = 0;
    my $end = Time::HiRes::time() + 30;
    while ($off < length $data) {
        my $n = syswrite($c->{ssl}, $data, length($data) - $off, $off);
        if (!defined $n) {
            return 0 unless $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            my $left = $end - Time::HiRes::time();
            return 0 if $left <= 0;
            my $sel = IO::Select->new($c->{ssl});
            if ($SSL_ERROR == SSL_WANT_READ) { $sel->can_read($left) }
            else                              { $sel->can_write($left) }
            next;
        }
        $off += $n;
    }
    return 1;
}

my $TOKEN = qr/[!#\$%&'*+.^_`|~0-9A-Za-z-]+/;

# one request from the connection; undef when the connection is done
sub _read_request {
    my ($cfg, $c) = @_;
    my $rto = 30;
    # request head
    while (1) {
        $c->{buf} =~ s/^(?:\r?\n)+//;
        last if $c->{buf} =~ /\r\n\r\n/;
        if (length $c->{buf} > $MAX_HEAD) {
            return { time => Time::HiRes::time(), error => [431, 'request head larger than 32 KB'], close => 1 };
        }
        my $n = _fill($c, length $c->{buf} ? $rto : $cfg->{idle_timeout});
        return undef unless $n;
    }
    my $t0 = Time::HiRes::time();
    my $i = index($c->{buf}, "\r\n\r\n");
    my $head = substr($c->{buf}, 0, $i);
    substr($c->{buf}, 0, $i + 4) = '';
    my ($line, @lines) = split /\r\n/, $head, -1;
    my $req = { time => $t0, headers => {}, hcount => {}, hlist => [], body => '' };
    my $bad = sub { $req->{error} = [ @_ ]; $req->{close} = 1; $req };
    my ($m, $target, $ver) = $line =~ m{^($TOKEN) (\S+) HTTP/(\d\.\d)$}
        or do { $req->{line} = $line; return $bad->(400, 'malformed request line') };
    @$req{qw(method target version)} = ($m, $target, $ver);
    for my $l (@lines) {
        my ($n, $v) = $l =~ /^($TOKEN):[ \t]*(.*?)[ \t]*$/
            or return $bad->(400, 'malformed header line (obs-fold or invalid name)');
        my $ln = lc $n;
        push @{ $req->{hlist} }, [ $n, $v ];
        $req->{hcount}{$ln}++;
        $req->{headers}{$ln} = exists $req->{headers}{$ln} ? "$req->{headers}{$ln}, $v" : $v;
    }
    return $bad->(505, "HTTP/$ver not supported") unless $ver eq '1.1' || $ver eq '1.0';
    my $h = $req->{headers};
    my $conn_hdr = lc($h->{connection} // '');
    $req->{close} = 1 if $conn_hdr =~ /\bclose\b/
        || ($ver eq '1.0' && $conn_hdr !~ /\bkeep-alive\b/);

    # body framing
    my $te = $h->{'transfer-encoding'};
    my $cl = $h->{'content-length'};
    my ($chunked, $len) = (0, 0);
    if (defined $te) {
        return $bad->(400, 'both Transfer-Encoding and Content-Length') if defined $cl;
        return $bad->(501, "Transfer-Encoding '$te' not supported") unless lc($te) eq 'chunked';
        $chunked = 1;
    } elsif (defined $cl) {
        return $bad->(400, "invalid Content-Length '$cl'") unless $cl =~ /^\d{1,15}$/;
        $len = $cl + 0;
    } elsif ($m eq 'POST' || $m eq 'PUT') {
        return $bad->(411, 'POST without Content-Length or Transfer-Encoding');
    }
    if ($len > $MAX_READ_BODY) {
        $req->{body_length} = $len;
        return $bad->(413, "request body of $len bytes exceeds $MAX_REQUEST_BODY bytes");
    }
    if (defined(my $exp = $h->{expect})) {
        return $bad->(417, "unsupported Expect '$exp'") unless lc($exp) eq '100-continue';
        if ($chunked || $len) {
            _write($c, "HTTP/1.1 100 Continue\r\n\r\n") or return undef;
        }
    }
    if ($chunked) {
        my $body = '';
        while (1) {
            while ($c->{buf} !~ /\r\n/) {
                return $bad->(400, 'chunk size line too long') if length $c->{buf} > 1024;
                _fill($c, $rto) or return $bad->(408, 'timeout reading a chunked body');
            }
            $c->{buf} =~ s/^([0-9A-Fa-f]{1,8})(?:[ \t]*;[^\r\n]*)?\r\n//
                or return $bad->(400, 'malformed chunk size line');
            my $size = hex $1;
            if ($size == 0) {
                # trailers, up to the empty line
                while (1) {
                    while ($c->{buf} !~ /\r\n/) {
                        _fill($c, $rto) or return $bad->(408, 'timeout reading chunk trailers');
                    }
                    $c->{buf} =~ s/^([^\r\n]*)\r\n//;
                    last if $1 eq '';
                }
                last;
            }
            return $bad->(413, "chunked request body exceeds $MAX_REQUEST_BODY bytes")
                if length($body) + $size > $MAX_READ_BODY;
            _need($c, $size + 2, $rto) or return $bad->(408, 'timeout reading a chunk');
            return $bad->(400, 'chunk data not followed by CRLF')
                unless substr($c->{buf}, $size, 2) eq "\r\n";
            $body .= substr($c->{buf}, 0, $size);
            substr($c->{buf}, 0, $size + 2) = '';
        }
        $req->{body} = $body;
    } elsif ($len) {
        _need($c, $len, $rto) or return $bad->(408, 'timeout reading the request body');
        $req->{body} = substr($c->{buf}, 0, $len);
        substr($c->{buf}, 0, $len) = '';
    }
    return $req;
}

# ---------------------------------------------------------------------------
# one request: decide, journal, answer.  Returns true to keep the connection.

sub _handle {
    my ($cfg, $c, $req) = @_;
    my $tid = _uuid();
    my $h = $req->{headers};
    my ($path, $query) = defined $req->{target}
        ? $req->{target} =~ /^([^?]*)(?:\?(.*))?\z/s : (undef, undef);
    my $e = {
        time        => $req->{time},
        conn        => $c->{conn},
        req         => $req->{n},
        pid         => $$,
        method      => $req->{method},
        path        => $path,
        query       => $query,
        host        => $h->{host},
        sni         => $c->{sni},
        alpn        => $c->{alpn},
        tls_version => $c->{tls},
        headers     => { map { $_ => _text($h->{$_}) } keys %$h },
        handle      => _text($h->{'servicebusnotification-devicehandle'}),
        format      => _text($h->{'servicebusnotification-format'}),
        tracking_id => $tid,
        json        => undef,
    };
    my $body = $req->{body} // '';
    $e->{body_length} = $req->{body_length} // length $body;
    if (length($body) && utf8::decode(my $t = $body)) {
        $e->{body} = $t;
    } elsif (length $body) {
        $e->{body} = undef;
        $e->{body_base64} = encode_base64($body, '');
    } else {
        $e->{body} = '';
    }
    if (length $body) {
        my $j = eval { $JSON_IN->decode($body) };
        $e->{json} = $j if ref $j;
    }

    my $r = _decide($cfg, $c, $req, $e, $path, $query);
    $r->{close} = 1 if $req->{close}
        || ($cfg->{max_requests} && $req->{n} >= $cfg->{max_requests});
    $e->{status}   = $r->{action} ? 0 : $r->{status};
    $e->{detail}   = $r->{detail};
    $e->{injected} = $r->{injected} if $r->{injected};
    $e->{hint}     = $r->{hint} if $r->{hint};
    if ($r->{status} && $r->{status} == 201) {
        $r->{id} = join '', 1 + int rand 9, map { int rand 10 } 1 .. 18;
        $e->{notification_id} = $r->{id};
        $e->{location} = "https://$cfg->{host}/$e->{hub}/messages/$r->{id}?api-version=$API_VERSION";
        $r->{location} = $e->{location};
    }
    _journal($cfg, $e);

    Time::HiRes::sleep($r->{delay_ms} / 1000) if $r->{delay_ms};
    if (($r->{action} // '') eq 'hang') {
        sleep $cfg->{hang_seconds};
        return 0;
    }
    if (($r->{action} // '') eq 'reset') {
        setsockopt($c->{ssl}, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        POSIX::close(fileno $c->{ssl});
        POSIX::_exit(0);
    }
    _respond($cfg, $c, $r, $tid, ($req->{method} // '') eq 'HEAD') or return 0;
    return !$r->{close};
}

sub _text {
    my ($v) = @_;
    return undef unless defined $v;
    utf8::decode($v);
    return $v;
}

sub _err {
    my ($status, $detail, %o) = @_;
    return { status => $status, detail => $detail, %o };
}

sub _decide {
    my ($cfg, $c, $req, $e, $path, $query) = @_;
    return _err(@{ $req->{error} }, close => 1) if $req->{error};
    my $h = $req->{headers};

    # 1. Host header and TLS SNI
    my $host = $h->{host};
    return _err(400, 'Bad Request - Invalid Hostname: Host header missing', close => 1)
        unless defined $host && length $host && $req->{hcount}{host} == 1;
    my ($hn) = $host =~ /^([^:\s]+)(?::\d{1,5})?$/
        or return _err(400, "Bad Request - Invalid Hostname: '$host'", close => 1);
    return _err(404, "Host '$host' is not this namespace ($cfg->{host})")
        unless lc $hn eq $cfg->{host};
    my $sni = $c->{sni};
    return _err(400, 'TLS SNI ' . (defined $sni && length $sni ? "'$sni'" : 'missing')
                   . " does not match the Host $cfg->{host}")
        unless defined $sni && lc $sni eq $cfg->{host};

    # 2. path and method
    return _err(404, "no such resource: $path")
        unless $path =~ m{^/([^/]+)/messages/?\z};
    my $hub = $cfg->{hubs}{ lc pct_decode($1) }
        // return _err(404, "hub '$1' does not exist in namespace $cfg->{namespace}");
    $e->{hub} = $hub;
    return _err(405, "method $req->{method} not allowed on $path", headers => [ Allow => 'POST' ])
        unless $req->{method} eq 'POST';

    # 3. query
    my %q;
    for my $p (split /&/, $query // '') {
        next if $p eq '';
        my ($k, $v) = split /=/, $p, 2;
        push @{ $q{ lc pct_decode($k) } }, pct_decode($v);
    }
    my $av = $q{'api-version'}
        or return _err(400, 'The api-version query parameter is missing');
    return _err(400, 'api-version given more than once') if @$av > 1;
    my $api = $av->[0] // '';
    return _err(400, "The api-version '$api' is not supported (known: @API_VERSIONS)")
        unless $KNOWN_API{$api};
    $e->{api_version} = $api;
    return _err(400, 'stand-in refuses broadcast sends: direct missing')
        unless exists $q{direct};

    # 4. SAS token
    my ($k, $err) = _check_sas($cfg, $req, $hub, $e);
    return $err if $err;
    unless ($k->{rights}{send}) {
        return { status => 403, empty => 1,
                 detail => "rule '$e->{sas}{skn}' lacks the Send right (has $k->{rights_text})" }
            if $api eq $API_VERSION;
        return _err(401, "Unauthorized: the rule '$e->{sas}{skn}' lacks the Send claim");
    }

    # 5. headers
    my $xv = $h->{'x-ms-version'};
    return _err(400, 'x-ms-version header must be 2020-06, got '
                     . (defined $xv ? "'$xv'" : 'none'))
        unless defined $xv && $xv eq $API_VERSION;
    my $fmt_raw = $h->{'servicebusnotification-format'};
    return _err(400, 'ServiceBusNotification-Format header missing') unless defined $fmt_raw;
    my $fmt = lc $fmt_raw;
    return _err(400, "ServiceBusNotification-Format '$fmt_raw' is not a valid platform "
                     . '(apple, fcmv1, gcm, windows, browser, adm, baidu, xiaomi)')
        unless exists $FORMATS{$fmt} && $req->{hcount}{'servicebusnotification-format'} == 1;
    $e->{format} = $fmt;
    $e->{legacy} = JSON::PP::true if $fmt eq 'gcm';
    my $handle = $h->{'servicebusnotification-devicehandle'};
    return _err(400, 'ServiceBusNotification-DeviceHandle header missing or empty')
        unless defined $handle && length $handle;
    return _err(400, 'ServiceBusNotification-DeviceHandle given more than once')
        if $req->{hcount}{'servicebusnotification-devicehandle'} > 1;
    return _err(400, "The device handle '$handle' is not a valid APNs token (hex)")
        if $fmt eq 'apple' && $handle !~ /^[0-9A-Fa-f]+\z/;
    return _err(400, "The device handle for '$fmt' must be an https URL")
        if ($fmt eq 'windows' || $fmt eq 'browser') && $handle !~ m{^https://\S+\z};

    my ($ctype, $cparam) = _content_type($h->{'content-type'});
    if ($fmt eq 'windows') {
        my $wt = lc($h->{'x-wns-type'} // '');
        return _err(400, "X-WNS-Type must be one of wns/toast, wns/tile, wns/badge, wns/raw")
            unless $WNS_TYPES{$wt};
        my $want = $wt eq 'wns/raw' ? 'application/octet-stream' : 'application/xml';
        return _err(415, "Content-Type for $wt must be $want")
            unless defined $ctype && $ctype eq $want;
    } else {
        return _err(415, "Content-Type for '$fmt' must be application/json, got "
                         . ($h->{'content-type'} // 'none'))
            unless defined $ctype && $ctype eq 'application/json'
                && (!defined $cparam->{charset} || lc $cparam->{charset} eq 'utf-8');
    }
    if ($fmt eq 'apple') {
        my $pt = $h->{'apns-push-type'};
        return _err(400, "apns-push-type '$pt' is not valid") if defined $pt && !$PUSH_TYPES{$pt};
        my $pr = $h->{'apns-priority'};
        return _err(400, "apns-priority '$pr' must be 5 or 10")
            if defined $pr && $pr ne '5' && $pr ne '10';
        return _err(400, 'apns-push-type background requires apns-priority 5')
            if defined $pt && $pt eq 'background' && ($pr // '') ne '5';
        my $ex = $h->{'apns-expiration'};
        return _err(400, "apns-expiration '$ex' must be an integer") if defined $ex && $ex !~ /^\d+\z/;
        my $ci = $h->{'apns-collapse-id'};
        return _err(400, 'apns-collapse-id longer than 64 bytes') if defined $ci && length $ci > 64;
    }
    if ($fmt eq 'browser') {
        for my $n (qw(Auth P256DH)) {
            my $v = $h->{ lc $n };
            return _err(400, "browser format requires the $n header") unless defined $v && length $v;
        }
    }

    # 6. body
    my $body = $req->{body} // '';
    my $blen = length $body;
    return _err(413, "request body of $blen bytes exceeds $MAX_REQUEST_BODY bytes")
        if $blen > $MAX_REQUEST_BODY;
    my $limit = $FORMATS{$fmt};
    return _err(400, "The $fmt notification body is empty") unless $blen;
    return _err(400, "The $fmt notification payload of $blen bytes exceeds $limit bytes")
        if $blen > $limit;
    if ($fmt eq 'windows') {
        return _err(400, 'The windows notification body is not XML')
            if ($h->{'x-wns-type'} // '') ne 'wns/raw' && $body !~ /^\s*</;
    } else {
        my $j = eval { $JSON_IN->decode($body) };
        return _err(400, "The $fmt notification body is not valid JSON") unless defined $j;
        return _err(400, "The $fmt notification body is not a JSON object") unless ref $j eq 'HASH';
        my $bad = _check_payload($fmt, $j);
        return _err(400, $bad) if $bad;
    }

    # 7. failure injection (only for otherwise valid requests)
    my $inj = _injection($cfg, $handle, $e);
    return $inj if $inj;
    return { status => 201, detail => 'accepted' };
}

sub _content_type {
    my ($v) = @_;
    return unless defined $v;
    my ($type, @p) = split /;/, $v;
    $type =~ s/^\s+|\s+$//g;
    my %p;
    for (@p) {
        my ($k, $pv) = /^\s*([^=\s]+)\s*=\s*"?([^"]*)"?\s*$/ or next;
        $p{ lc $k } = $pv;
    }
    return (lc $type, \%p);
}

sub _check_payload {
    my ($fmt, $j) = @_;
    if ($fmt eq 'apple') {
        return 'The apple notification body has no "aps" object'
            unless ref $j->{aps} eq 'HASH';
    } elsif ($fmt eq 'fcmv1') {
        my $m = $j->{message};
        return 'The fcmv1 notification body has no "message" object' unless ref $m eq 'HASH';
        return 'message.token must not be set for a direct send (Notification Hubs fills it)'
            if exists $m->{token};
        for my $w (qw(topic condition)) {
            return "message.$w must not be set for a direct send" if exists $m->{$w};
        }
        for my $where ([ 'message.data', $m->{data} ],
                       [ 'message.android.data', ref $m->{android} eq 'HASH' ? $m->{android}{data} : undef ]) {
            my ($name, $d) = @$where;
            next unless defined $d;
            return "$name must be an object of strings" unless ref $d eq 'HASH';
            for my $k (sort keys %$d) {
                my $v = $d->{$k};
                return "$name.$k must be a string" if !defined $v || ref $v || !_is_string($v);
            }
        }
        if (exists $m->{android}) {
            my $a = $m->{android};
            return 'message.android must be an object' unless ref $a eq 'HASH';
            if (exists $a->{ttl}) {
                my $t = $a->{ttl};
                return 'message.android.ttl must be a string like "60s"'
                    if !defined $t || ref $t || !_is_string($t) || $t !~ /^\d+(?:\.\d{1,9})?s\z/;
            }
            if (exists $a->{priority}) {
                my $p = $a->{priority};
                return 'message.android.priority must be "high" or "normal"'
                    if !defined $p || ref $p || $p !~ /^(?:high|normal)\z/i;
            }
        }
    }
    return undef;
}

# true if a decoded JSON scalar was a JSON string (not a number)
sub _is_string {
    my ($v) = @_;
    my $b = B::svref_2object(\$v);
    my $flags = $b->FLAGS;
    return ($flags & B::SVp_POK()) && !($flags & (B::SVp_IOK() | B::SVp_NOK())) ? 1 : 0;
}

sub _check_sas {
    my ($cfg, $req, $hub, $e) = @_;
    my $auth = $req->{headers}{authorization};
    return (undef, _err(401, 'MissingToken: The authorization header was not found.'))
        unless defined $auth && length $auth;
    return (undef, _err(401, 'MalformedToken: more than one Authorization header'))
        if $req->{hcount}{authorization} > 1;
    my ($tok) = $auth =~ /^SharedAccessSignature\s+(\S+)\z/
        or return (undef, _err(401, 'MalformedToken: The credentials contained in the '
                                . 'authorization header are not in the SharedAccessSignature format.'));
    my %f;
    for my $part (split /&/, $tok) {
        my ($k, $v) = split /=/, $part, 2;
        return (undef, _err(401, "MalformedToken: field '$part' has no value")) unless defined $v;
        return (undef, _err(401, "MalformedToken: field '$k' given twice")) if exists $f{$k};
        $f{$k} = $v;
    }
    for my $n (qw(sr sig se skn)) {
        return (undef, _err(401, "MalformedToken: the token has no '$n' field"))
            unless defined $f{$n} && length $f{$n};
    }
    return (undef, _err(401, "MalformedToken: se '$f{se}' is not an integer"))
        unless $f{se} =~ /^\d{1,12}\z/;
    my $skn = pct_decode($f{skn});
    my $sr  = pct_decode($f{sr});
    $e->{sas} = { sr => $sr, se => $f{se} + 0, skn => $skn };
    my $k = $cfg->{keys}{$skn}
        or return (undef, _err(401, "InvalidSignature: The token has an invalid signature "
                                   . "(unknown SharedAccessKeyName '$skn')"));
    return (undef, _err(401, "ExpiredToken: The token is expired. Expiration time: '"
                             . _iso($f{se}) . "'"))
        if $f{se} < time;
    my $want_url = lc "$cfg->{host}/$hub/messages";
    (my $aud = lc $sr) =~ s{^[a-z][a-z0-9+.-]*://}{};
    my $ok = length $aud && index($want_url, $aud) == 0
        && (length $aud == length $want_url || substr($aud, -1) eq '/'
            || substr($want_url, length $aud, 1) eq '/');
    return (undef, _err(401, "InvalidAudience: The token audience '$sr' does not match "
                             . "the request URL https://$want_url"))
        unless $ok;
    my $got  = pct_decode($f{sig});
    my $want = sas_signature($k->{key}, $f{sr}, $f{se});
    if ($got ne $want) {
        my $hint;
        if ($got eq sas_signature($k->{key}, $sr, $f{se})) {
            $hint = 'the signature was computed over the unencoded sr';
        } elsif ($got eq encode_base64(hmac_sha256("$f{sr}\n$f{se}", decode_base64($k->{key})), '')) {
            $hint = 'the signature was computed with the base64-decoded key';
        } elsif ($f{sig} =~ /\+/) {
            (my $raw = $f{sig}) =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
            $hint = "the sig was not percent-encoded ('+' decodes to a space)" if $raw eq $want;
        }
        return (undef, _err(401, 'InvalidSignature: The token has an invalid signature.',
                            $hint ? (hint => $hint) : ()));
    }
    return ($k, undef);
}

sub _iso {
    my @t = gmtime $_[0];
    return sprintf '%04d-%02d-%02dT%02d:%02d:%02dZ', $t[5] + 1900, $t[4] + 1, @t[3, 2, 1, 0];
}

# ---------------------------------------------------------------------------
# failure injection

sub _injection {
    my ($cfg, $handle, $e) = @_;
    my $lh = lc $handle;
    my ($rules, $stamp, $rerr) = _rules($cfg);
    return { status => 500, detail => "stand-in: bad $cfg->{rules}: $rerr" } if $rerr;
    for my $i (0 .. $#$rules) {
        my $r = $rules->[$i];
        next unless index($lh, lc $r->{prefix}) == 0;
        next if defined $r->{format} && lc $r->{format} ne $e->{format};
        next if defined $r->{hub} && lc $r->{hub} ne lc $e->{hub};
        if ($r->{times}) {
            my $n = _bump($cfg, "rule:$stamp:$i" . ($r->{per_handle} ? ":$lh" : ''));
            $e->{attempt} = $n + 1;
            return undef if $n >= $r->{times};
        }
        my $st = $r->{status} // 503;
        my %o  = (injected => "rules.json[$i]:$r->{prefix}");
        $o{delay_ms} = $r->{delay_ms} if $r->{delay_ms};
        $o{headers}  = [ 'Retry-After' => $r->{retry_after} ] if defined $r->{retry_after};
        $o{empty}    = 1 if $r->{empty_body} || $st eq '403';
        return { %o, action => $st } if $st eq 'hang' || $st eq 'reset';
        return { %o, status => 201, detail => 'accepted (rule delay)' } if $st == 201;
        return { %o, status => $st,
                 detail => $r->{detail} // "injected by rules.json rule $i (prefix $r->{prefix})" };
    }
    for my $inj (@INJECT) {
        my ($p, $s) = @$inj;
        next unless index($lh, $p) == 0;
        if ($s->{times}) {
            my $n = _bump($cfg, "handle:$lh");
            $e->{attempt} = $n + 1;
            return undef if $n >= $s->{times};
        }
        my %o = (injected => $p);
        $o{headers} = [ 'Retry-After' => $s->{retry_after} ] if $s->{retry_after};
        $o{empty}   = 1 if $s->{empty};
        $o{close}   = 1 if $s->{close};
        return { %o, action => $s->{action}, detail => "injected: $s->{action} (handle prefix $p)" }
            if $s->{action};
        return { %o, status => $s->{status}, detail => "injected by device handle prefix $p" };
    }
    return undef;
}

my %RULES_CACHE;

sub _rules {
    my ($cfg) = @_;
    my @st = Time::HiRes::stat($cfg->{rules});
    return ([]) unless @st;
    my $stamp = "$st[9]:$st[7]";
    return @{ $RULES_CACHE{rules} } if $RULES_CACHE{stamp} && $RULES_CACHE{stamp} eq $stamp;
    my ($list, $err);
    if (open(my $fh, '<:raw', $cfg->{rules})) {
        local $/;
        my $txt = <$fh>;
        my $d = eval { $JSON_IN->decode($txt) };
        if (!$d) {
            $err = "not JSON: $@";
        } elsif (ref $d ne 'HASH' || ref $d->{rules} ne 'ARRAY') {
            $err = 'expected {"rules":[...]}';
        } else {
            $list = $d->{rules};
            for my $r (@$list) {
                if (ref $r ne 'HASH' || !defined $r->{prefix} || !length $r->{prefix}) {
                    $err = 'every rule needs a non-empty "prefix"';
                } elsif (defined $r->{status} && $r->{status} !~ /^(?:[1-5]\d\d|hang|reset)\z/) {
                    $err = "bad status '$r->{status}'";
                }
            }
            $stamp .= ':' . sha1_hex($txt);
        }
    } else {
        return ([]);
    }
    my @res = $err ? ([], $stamp, $err) : ($list, $stamp);
    %RULES_CACHE = (stamp => "$st[9]:$st[7]", rules => \@res);
    return @res;
}

# increment a persistent counter; returns its value before the increment
sub _bump {
    my ($cfg, $key) = @_;
    open(my $fh, '+>>', $cfg->{state}) or die "$cfg->{state}: $!";
    flock($fh, LOCK_EX) or die "flock: $!";
    seek($fh, 0, SEEK_SET);
    local $/;
    my $txt = <$fh>;
    my $s = (defined $txt && length $txt) ? eval { $JSON_IN->decode($txt) } : undef;
    $s = {} unless ref $s eq 'HASH';
    my $n = $s->{$key} // 0;
    $s->{$key} = $n + 1;
    truncate($fh, 0);
    print {$fh} $JSON_OUT->encode($s);
    close $fh;
    return $n;
}

# ---------------------------------------------------------------------------
# journal and responses

sub _journal {
    my ($cfg, $e) = @_;
    my $line = $JSON_OUT->encode($e);
    # never write a configured key to disk: redact and flag it
    for my $k (values %{ $cfg->{keys} }) {
        my $kt = $k->{key};
        utf8::encode($kt);
        for my $form ($kt, pct_encode($kt)) {
            next unless length $form >= 8;
            if (index($line, $form) >= 0) {
                $e->{key_leaked} = JSON::PP::true;
                $line =~ s/\Q$form\E/<redacted-key>/g;
            }
        }
    }
    if ($e->{key_leaked}) {
        $line =~ s/^\{/{"key_leaked":true,/;
    }
    open(my $fh, '>>:raw', $cfg->{journal}) or die "$cfg->{journal}: $!";
    flock($fh, LOCK_EX) or die "flock: $!";
    syswrite($fh, "$line\n");
    close $fh;
}

my @DAY = qw(Sun Mon Tue Wed Thu Fri Sat);
my @MON = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);

sub _http_date {
    my @t = gmtime(shift // time);
    return sprintf '%s, %02d %s %04d %02d:%02d:%02d GMT',
        $DAY[ $t[6] ], $t[3], $MON[ $t[4] ], $t[5] + 1900, @t[2, 1, 0];
}

sub _xml_escape {
    my ($s) = @_;
    $s =~ s/&/&amp;/g;
    $s =~ s/</&lt;/g;
    $s =~ s/>/&gt;/g;
    $s =~ s/"/&quot;/g;
    return $s;
}

sub _respond {
    my ($cfg, $c, $r, $tid, $head_only) = @_;
    my $st = $r->{status};
    my (@h, $body);
    $body = '';
    if ($st != 201 && !$r->{empty}) {
        (my $d = $r->{detail} // '') =~ s/\.?\s*\z//;
        $body = '<Error><Code>' . $st . '</Code><Detail>'
            . _xml_escape("$d. TrackingId:$tid,TimeStamp:" . _http_date())
            . '</Detail></Error>';
        utf8::encode($body);
        push @h, 'Content-Type' => 'application/xml; charset=utf-8';
    }
    push @h, Location => $r->{location} if $st == 201 && $r->{location};
    push @h, 'Content-Length' => length $body,
             Server => 'Microsoft-HTTPAPI/2.0',
             'Strict-Transport-Security' => 'max-age=31536000',
             TrackingId => $tid,
             Date => _http_date(),
             @{ $r->{headers} // [] };
    push @h, Connection => 'close' if $r->{close};
    my $out = "HTTP/1.1 $st " . ($REASON{$st} // 'Status') . "\r\n";
    for (my $i = 0; $i < @h; $i += 2) {
        $out .= "$h[$i]: $h[$i + 1]\r\n";
    }
    $out .= "\r\n";
    $out .= $body unless $head_only;
    return _write($c, $out);
}

sub _uuid {
    my $b = _random_bytes(16);
    substr($b, 6, 1) = chr((ord(substr $b, 6, 1) & 0x0f) | 0x40);
    substr($b, 8, 1) = chr((ord(substr $b, 8, 1) & 0x3f) | 0x80);
    my $h = unpack 'H*', $b;
    return join '-', substr($h, 0, 8), substr($h, 8, 4), substr($h, 12, 4),
        substr($h, 16, 4), substr($h, 20);
}

1;

__END__

=encoding utf8

=head1 NAME

AcsTest::FakeNH - a strict HTTPS stand-in for Azure Notification Hubs direct sends

=head1 SYNOPSIS

    use AcsTest::FakeNH;

    my $nh = AcsTest::FakeNH->start(
        dir       => $dir,                       # journal, certificates, state
        namespace => 'acs-test-ns',
        hubs      => ['acs-push', 'acs-voip'],   # or hub => 'acs-push'
        key_name  => 'DefaultFullSharedAccessSignature',
        key       => 'c2FtcGxlLXNoYXJlZC1hY2Nlc3Mta2V5LW5vdC1yZWFsPQ==',
        rights    => 'manage',                   # send | listen | manage
        keys      => { ListenOnly => ['a2V5Mg==', 'listen'] },   # optional more rules
    );
    $nh->port;                # 127.0.0.1 port, TLS
    $nh->ca;                  # CA file that signed the server certificate
    $nh->other_ca;            # an unrelated CA (a client using it must fail)
    $nh->connection_string;   # Endpoint=sb://acs-test-ns.servicebus.windows.net/;...
    $nh->resolve;             # "acs-test-ns.servicebus.windows.net:PORT:127.0.0.1" (curl --resolve)
    my @r = $nh->wait_requests(2, 5);   # journal entries (hashrefs)
    $nh->clear;               # truncate the journal
    $nh->stop;                # also done by DESTROY and END

    AcsTest::FakeNH::sas_token($key_name, $key_text, $uri, $se);
    AcsTest::FakeNH::sas_signature($key_text, $sr_encoded, $se);

=head1 DESCRIPTION

The only fake in the project: an HTTP/1.1-over-TLS server on 127.0.0.1
that accepts exactly what the real Notification Hubs data plane accepts for
a I<direct send> (F<PROTOCOLS.md>, section 3) and answers each wrong
request as NH does: status, C<< <Error><Code>nnn</Code><Detail>...</Detail></Error> >>
body with C<Content-Type: application/xml; charset=utf-8>, and a C<TrackingId>
header on every response.  Every request, accepted or not, is appended to
a JSON-lines journal.

TLS 1.2+ only, ALPN C<http/1.1> only, keep-alive (Content-Length or chunked
request bodies, C<Expect: 100-continue> honoured), one forked process per
connection.  The server's process group is killed by C<stop>; the server
also stops by itself when the process that started it goes away.

=head1 FUNCTIONS

=over

=item setup_ca($dir)

Creates once, safely under concurrent callers (flock + temp dir + rename),
F<ca.pem>/F<ca.key> (test CA), F<server.pem>/F<server.key> (for
C<*.servicebus.windows.net>, C<localhost>, IP 127.0.0.1, signed by the CA) and
F<other-ca.pem>/F<other-ca.key> (an unrelated CA).  Returns a hashref
C<{ca, ca_key, cert, key, other_ca, other_key}>.

=item sas_signature($key_text, $sr_encoded, $se)

C<base64(HMAC-SHA256(utf8($key_text), "$sr_encoded\n$se"))>: the key text is
used as is (never base64-decoded) and C<sr> exactly as sent (percent-encoded).

=item sas_token($key_name, $key_text, $uri, $se)

The C<Authorization> header value: C<sr> = percent-encode(lowercase($uri)),
C<sig> percent-encoded, C<se>, C<skn>.

=item pct_encode($s), pct_decode($s), parse_connection_string($cs)

Helpers.  C<pct_decode> turns C<+> into a space like .NET's C<UrlDecode>,
so a C<sig> whose C<+> was not encoded fails as on the real service.

=back

=head1 METHODS

=over

=item start(%options)

Forks the server and returns once it listens.  Options: C<dir> (required),
C<namespace> (C<acs-test-ns>), C<hub> or C<hubs> (C<acs-push>), C<key_name>
(C<DefaultFullSharedAccessSignature>), C<key> (random if neither C<key> nor
C<keys>), C<rights> (C<manage>; a comma list of C<send>, C<listen>,
C<manage> is accepted), C<keys> (more rules: C<< { Name => 'key' } >>, with
rights guessed from the name - C<manage>/C<full>, C<send>, C<listen> -
else C<rights>; or C<< { Name => ['key', 'listen'] } >> or
C<< { Name => { key => ..., rights => ... } } >>), C<port> (0 = free port),
C<ca_dir> (where the certificates live, default C<dir>), C<idle_timeout>
(keep-alive idle seconds, 120), C<hang_seconds> (for C<0777>, 30),
C<max_requests> (per connection, 0 = unlimited; the last one is answered
with C<Connection: close>).

=item run(%options, on_ready => sub { my $nh = shift; ... })

The same server in the foreground (used by F<t/lib/fake-nh>).

=item stop

Kills the server's process group and reaps it.  Called by DESTROY and END
(only in the process that started the server).

=item port, ca, other_ca, cert, journal, log_file, dir, namespace, host, hub, hubs, key_name, key([$name]), base_url, resolve, pid

Accessors.  C<base_url> is C<https://{namespace}.servicebus.windows.net:PORT>.

=item connection_string([$key_name])

=item send_path([$hub])

C</{hub}/messages/?api-version=2020-06&direct>.

=item token(%o)

A valid C<Authorization> value for the hub (C<hub>, C<key_name>, C<key>,
C<uri>, C<se> override).

=item requests

The journal as a list of hashrefs (a count in scalar context).

=item wait_requests($n, $timeout)

Polls the journal until it holds at least C<$n> entries or C<$timeout>
seconds (default 10) passed; returns the entries.

=item clear

Truncates the journal.

=item reset_counters

Forgets the counters of counted failures (C<05031>, C<04291>, rules with
C<times>).

=item set_rules(\@rules) / set_rules()

Writes (atomically) or removes F<rules.json>, see L</RULES>.

=back

=head1 VALIDATION

In this order; the first failure is the answer.

=over

=item 1.

Host header must be C<{namespace}.servicebus.windows.net> (a port is
allowed) else 404 (missing or malformed Host: 400); the TLS SNI must be
that host too, else 400.

=item 2.

Path C</{hub}/messages> or C</{hub}/messages/> (hub case-insensitive):
unknown hub or other path 404; method other than POST 405.

=item 3.

Query: C<api-version> one of 2015-01 2015-04 2015-08 2016-07 2017-04 2020-06
(else 400); the C<direct> key must be present, else 400 I<stand-in refuses
broadcast sends: direct missing>.

=item 4.

C<Authorization: SharedAccessSignature sr=&sig=&se=&skn=> (any order):
missing or malformed 401; unknown C<skn> 401; C<se> in the past 401
C<ExpiredToken: ...>; C<sr> (decoded, lowercased, scheme ignored) must be a
prefix, on a C</> boundary, of C<https://{namespace}.servicebus.windows.net/{hub}/messages>
else 401 C<InvalidAudience>; C<sig> must match C<sas_signature> over the
C<sr> as sent (see C<sas_signature>) else 401 C<InvalidSignature> (the journal's C<hint> says
when the signature matches a known wrong variant).  A rule without the
Send right gets 403 with an empty body on 2020-06 (401 on older versions).

=item 5.

C<x-ms-version: 2020-06> (400); C<ServiceBusNotification-Format> one of
apple fcmv1 gcm windows browser adm baidu xiaomi, case-insensitive (400;
C<gcm> is journaled with C<legacy: true>); C<ServiceBusNotification-DeviceHandle>
present, non-empty, once (400) - hexadecimal for apple, an https URL for
windows and browser (400); C<Content-Type> C<application/json> (charset
optional, utf-8 only) for the JSON formats, for windows C<application/xml>
(toast, tile, badge) or C<application/octet-stream> (C<X-WNS-Type: wns/raw>;
X-WNS-Type is required, 400), else 415; apple: C<apns-push-type> one of
alert background voip complication fileprovider mdm location liveactivity
pushtotalk, C<apns-priority> 5 or 10, background needs 5,
C<apns-expiration> an integer, C<apns-collapse-id> at most 64 bytes (400);
browser: C<Auth> and C<P256DH> headers (400).

=item 6.

Body: over 65536 bytes 413 (over 1 MiB is not read: 413 and the connection
is closed); empty 400; over the payload limit 400 (apple, fcmv1, gcm,
browser, baidu, xiaomi 4096; adm 6144; windows 5120); JSON formats: a JSON
object; apple: an C<aps> object; fcmv1: a C<message> object without
C<token>, C<topic>, C<condition>, C<data> and C<android.data> with string
values only, C<android.ttl> a string like C<"60s">, C<android.priority>
C<high> or C<normal> (any case); windows (not raw):
starts with C<< < >>.

=back

HTTP-level errors (bad request line or header, C<Transfer-Encoding> with
C<Content-Length>, POST without a length 411, unsupported C<Expect> 417,
HTTP version other than 1.0/1.1 505) are answered and journaled too, with
C<Connection: close>.

=head1 FAILURE INJECTION

Only for requests that passed every check above.  By device-handle prefix,
case-insensitive (hex digits, so an APNs token can carry them):

    0400   400                    0410   410 (device gone)
    0403   403, empty body        0413   413
    0404   404                    0429   429, Retry-After: 1
    0408   408, connection closed 0500   500
    0503   503
    0777   request read, then no answer for hang_seconds (30 s), then close
    0666   connection reset (RST) without an answer
    05031  503 for the FIRST request with that exact handle, then 201
    04291  429 with Retry-After: 2 for the first request, then 201

The counters of C<05031>/C<04291> live in F<fake-nh-state.json> in C<dir>
(under flock, shared by all connections); C<reset_counters> clears them.
Avoid these prefixes in handles that should succeed.

=head1 RULES

F<$dir/rules.json>, optional, re-read when it changes, checked before the
prefixes above:

    {"rules":[{"prefix":"abcd","status":503,"times":2,"retry_after":1,"delay_ms":0}]}

C<prefix> (required, case-insensitive), C<status> (an HTTP status, 201 for a
delayed success, C<"hang"> or C<"reset">; default 503), C<times> (the first
N matching requests get C<status>, later ones 201; absent or 0: always),
C<per_handle> (count per exact handle instead of per rule), C<retry_after>,
C<delay_ms> (wait before answering), C<detail>, C<empty_body>, C<format>,
C<hub> (extra match conditions).  Rewriting the file restarts the counts.
An invalid file makes every matching-time request a 500 naming the error.

=head1 SUCCESS

C<201>, empty body, C<Content-Length: 0>,
C<Location: https://{namespace}.servicebus.windows.net/{hub}/messages/{id}?api-version=2020-06>,
C<TrackingId> (a UUID), C<Date>.

=head1 JOURNAL

F<$dir/journal.jsonl>, one JSON object per line, appended under flock
before the answer is sent: C<time>, C<conn> (connection serial), C<req>
(index on the connection), C<pid>, C<method>, C<path>, C<query>, C<host>,
C<sni>, C<alpn>, C<tls_version>, C<headers> (lowercased names; repeated
headers joined with C<, >), C<body> (text, or null with C<body_base64> when not
UTF-8), C<body_length>, C<json> (decoded body or null), C<handle>,
C<format>, C<legacy> (gcm), C<hub>, C<api_version>, C<sas>
(C<{sr, se, skn}>), C<status> (0 when C<0777>/C<0666> sent no answer),
C<detail>, C<hint>, C<injected>, C<attempt> (counted injections),
C<tracking_id>, C<notification_id> and C<location> (201).  A configured key
text never reaches the journal: if a client sent one it is replaced by
C<< <redacted-key> >> and the entry gets C<key_leaked: true>.

The server's own log (handshake failures, errors) is F<$dir/fake-nh.log>.

=head1 NOT MODELLED

Batch sends, tag sends, installations and registrations, telemetry; the real
service's exact Detail texts (only their leading codes, like
C<ExpiredToken:>, follow NH).

=cut
