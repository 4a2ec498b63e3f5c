package AcsTest::FakeNH;

# A strict stand-in for the Azure Notification Hubs data plane (direct send,
# installations, tag and template sends) over HTTPS, for tests.  See the POD at the end of this file.
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
# protocol constants (Notification Hubs REST API, docs/dispatch.md)

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

# installations (the REST reference, see INSTALLATIONS below): NH's platform names, lower case
our %INST_PLATFORMS = map { $_ => 1 } qw(apns wns gcm fcmv1 adm baidu browser xiaomi);
# send format => installation platform, and back
our %FORMAT_PLATFORM = (apple => 'apns', windows => 'wns', gcm => 'gcm', fcmv1 => 'fcmv1',
                        adm => 'adm', baidu => 'baidu', browser => 'browser', xiaomi => 'xiaomi');
our %PLATFORM_FORMAT = reverse %FORMAT_PLATFORM;
our $TAG_RE            = qr/[A-Za-z0-9_\@#.:\-]{1,120}/;
our $USER_ID_RE        = qr/[A-Za-z0-9_\@#.:=\-]{1,256}/;
our $MAX_TAGS          = 60;     # per installation (and per template)
our $MAX_EXPR_TAGS_OR  = 20;     # tags in an expression of || only
our $MAX_EXPR_TAGS     = 6;      # tags in any other expression
our $MAX_ID_LENGTH     = 256;    # stand-in's own limit for installation ids
our $NEVER_EXPIRES     = '9999-12-31T23:59:59.9999999Z';

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
# SAS tokens (docs/dispatch.md, section 1)

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

# parse a connection string (docs/dispatch.md, section 1) into a hashref
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
        store        => "$dir/installations.json",
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

# the path and query of a tag (or template) send: no direct
sub tag_send_path {
    my ($self, $hub) = @_;
    return '/' . ($hub // $self->hub) . "/messages/?api-version=$API_VERSION";
}

# the path and query of an installation
sub installation_path {
    my ($self, $id, $hub) = @_;
    croak 'installation_path(id[, hub])' unless defined $id;
    (my $seg = $id) =~ s/([^A-Za-z0-9\-._~:@=|+!\$&'()*,;])/sprintf('%%%02X', ord $1)/ge;
    return '/' . ($hub // $self->hub) . "/installations/$seg?api-version=$API_VERSION";
}

# an Authorization header value for $hub (default: the first hub)
sub token {
    my ($self, %o) = @_;
    my $name = $o{key_name} // $self->{primary};
    my $key  = $o{key} // $self->{keys}{$name}{key};
    my $uri  = $o{uri} // "https://$self->{host}/" . ($o{hub} // $self->hub);
    return sas_token($name, $key, $uri, $o{se} // time + 3600);
}

# every journal line: requests and deliveries (fan-out of tag sends)
sub entries {
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

# the requests only (one entry per HTTP request)
sub requests {
    my ($self) = @_;
    my @r = grep { ($_->{kind} // 'request') ne 'delivery' } $self->entries;
    return wantarray ? @r : scalar @r;
}

# the deliveries only (one entry per device and template reached by a tag send)
sub deliveries {
    my ($self) = @_;
    my @r = grep { ($_->{kind} // '') eq 'delivery' } $self->entries;
    return wantarray ? @r : scalar @r;
}

sub _wait_for {
    my ($self, $what, $n, $timeout) = @_;
    my $end = Time::HiRes::time() + ($timeout // 10);
    my @r;
    while (1) {
        @r = $self->$what;
        last if @r >= $n || Time::HiRes::time() >= $end;
        Time::HiRes::sleep(0.05);
    }
    return wantarray ? @r : scalar @r;
}

sub wait_requests   { my $s = shift; $s->_wait_for('requests', @_) }
sub wait_deliveries { my $s = shift; $s->_wait_for('deliveries', @_) }

# installations as stored (each as GET returns it, plus "hub")
sub installations {
    my ($self) = @_;
    my $st = _store_read($self);
    my @r;
    for my $hub (sort keys %$st) {
        for my $id (sort keys %{ $st->{$hub} }) {
            push @r, { %{ _inst_view($st->{$hub}{$id}) }, hub => $self->{hubs}{$hub} // $hub };
        }
    }
    return wantarray ? @r : scalar @r;
}

# one installation as GET returns it, or undef
sub installation {
    my ($self, $hub, $id) = @_;
    ($hub, $id) = ($self->hub, $hub) if @_ == 2;
    my $i = _store_read($self)->{ lc $hub }{$id};
    return $i ? _inst_view($i) : undef;
}

# store an installation directly (validated as a PUT body; croaks on error)
sub add_installation {
    my ($self, $inst, $hub) = @_;
    croak 'add_installation(\%installation[, hub])' unless ref $inst eq 'HASH';
    my ($n, $err) = _inst_validate($inst, $inst->{installationId});
    croak "add_installation: $err" if $err;
    $hub = lc($hub // $self->hub);
    croak "add_installation: no hub '$hub'" unless $self->{hubs}{$hub};
    _store_update($self, sub { $_[0]{$hub}{ $n->{installationId} } = $n; 1 });
    return _inst_view($n);
}

sub clear_installations {
    my ($self) = @_;
    _store_update($self, sub { %{ $_[0] } = (); 1 });
    return 1;
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
            # notification ids of their own: not the parent's rand() state
            srand($$ ^ int(Time::HiRes::time() * 1e6));
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
    } elsif ($m eq 'POST' || $m eq 'PUT' || $m eq 'PATCH') {
        return $bad->(411, "$m without Content-Length or Transfer-Encoding");
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
    my $cid = _uuid();
    my $h = $req->{headers};
    my ($path, $query) = defined $req->{target}
        ? $req->{target} =~ /^([^?]*)(?:\?(.*))?\z/s : (undef, undef);
    my $e = {
        kind        => 'request',
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
        correlation_id => $cid,
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
    my @more;
    if ($r->{deliveries} && !$r->{action} && ($r->{status} // 0) == 201) {
        $e->{deliveries} = scalar @{ $r->{deliveries} };
        for my $d (@{ $r->{deliveries} }) {
            push @more, {
                kind            => 'delivery',
                time            => $req->{time},
                conn            => $c->{conn},
                req             => $req->{n},
                pid             => $$,
                tracking_id     => $tid,
                notification_id => $r->{id},
                %$d,
            };
        }
    }
    _journal($cfg, $e, @more);

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
    push @{ $r->{headers} }, 'x-ms-correlation-request-id' => $cid;
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
    return _installation_request($cfg, $c, $req, $e, $path, $query, $1, $2)
        if $path =~ m{^/([^/]+)/installations/([^/]+)\z};
    return _err(404, "no such resource: $path")
        unless $path =~ m{^/([^/]+)/messages/?\z};
    my $hub = $cfg->{hubs}{ lc pct_decode($1) }
        // return _err(404, "hub '$1' does not exist in namespace $cfg->{namespace}");
    $e->{hub} = $hub;
    return _err(405, "method $req->{method} not allowed on $path", headers => [ Allow => 'POST' ])
        unless $req->{method} eq 'POST';

    # 3. query
    my ($q, $api, $qerr) = _query($query, $e);
    return $qerr if $qerr;
    my $direct = exists $q->{direct};
    my $tags_hdr = $h->{'servicebusnotification-tags'};
    $e->{tags} = _text($tags_hdr) if defined $tags_hdr && !$direct;
    return _err(400, 'stand-in refuses broadcast sends: direct missing and no '
                     . 'ServiceBusNotification-Tags header')
        unless $direct || defined $tags_hdr;
    $e->{op} = $direct ? 'direct-send' : 'tag-send';

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
    my $template = !$direct && $fmt eq 'template';
    return _err(400, "ServiceBusNotification-Format '$fmt_raw' is not a valid platform "
                     . '(apple, fcmv1, gcm, windows, browser, adm, baidu, xiaomi'
                     . ($direct ? ')' : ', template)'))
        unless (exists $FORMATS{$fmt} || $template)
            && $req->{hcount}{'servicebusnotification-format'} == 1;
    $e->{format} = $fmt;
    $e->{legacy} = JSON::PP::true if $fmt eq 'gcm';
    my $handle = $h->{'servicebusnotification-devicehandle'};
    my $expr;
    if ($direct) {
        return _err(400, 'ServiceBusNotification-DeviceHandle header missing or empty')
            unless defined $handle && length $handle;
        return _err(400, 'ServiceBusNotification-DeviceHandle given more than once')
            if $req->{hcount}{'servicebusnotification-devicehandle'} > 1;
        return _err(400, "The device handle '$handle' is not a valid APNs token (hex)")
            if $fmt eq 'apple' && $handle !~ /^[0-9A-Fa-f]+\z/;
        return _err(400, "The device handle for '$fmt' must be an https URL")
            if ($fmt eq 'windows' || $fmt eq 'browser') && $handle !~ m{^https://\S+\z};
    } else {
        return _err(400, 'ServiceBusNotification-DeviceHandle is only for direct sends '
                         . '(stand-in refuses it on a tag send)')
            if defined $handle;
        return _err(400, 'ServiceBusNotification-Tags given more than once')
            if $req->{hcount}{'servicebusnotification-tags'} > 1;
        my $perr;
        ($expr, $perr) = _tag_expr_parse($tags_hdr);
        return _err(400, "Invalid tag expression '$tags_hdr': $perr") if $perr;
        $e->{tag_count} = $expr->{count};
    }

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
    if ($fmt eq 'apple' || $template) {
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
    if ($fmt eq 'browser' && $direct) {
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
    my $props;
    if ($template) {
        return _err(400, 'The template notification body is empty') unless $blen;
        my $j = eval { $JSON_IN->decode($body) };
        return _err(400, 'The template notification body is not valid JSON') unless defined $j;
        return _err(400, 'The template notification body must be a JSON object of string properties')
            unless ref $j eq 'HASH';
        for my $pn (sort keys %$j) {
            my $v = $j->{$pn};
            return _err(400, "template property '$pn' must be a string")
                if !defined $v || ref $v || !_is_string($v);
            return _err(400, "template property '$pn' given twice (names are not case-sensitive)")
                if exists $props->{ lc $pn };
            $props->{ lc $pn } = $v;
        }
        $props //= {};
    } else {
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
            my $bad = _check_payload($fmt, $j, !$direct);
            return _err(400, $bad) if $bad;
        }
    }

    # 7. failure injection (only for otherwise valid requests)
    if ($direct) {
        my $inj = _injection($cfg, $e, { handle => $handle, path => $path, method => 'POST' });
        return $inj if $inj;
        return { status => 201, detail => 'accepted' };
    }
    my $inj = _injection($cfg, $e, { tags => $tags_hdr, path => $path, method => 'POST' });
    return $inj if $inj && !$inj->{proceed};

    # 8. fan-out to the matching installations
    my @d = _fan_out($cfg, $req, $hub, $fmt, $expr, $props);
    $e->{matched_installations} = scalar keys %{ { map { $_->{installation_id} => 1 } @d } };
    return { status => 201, detail => 'accepted (tag send)', deliveries => \@d,
             $inj ? (delay_ms => $inj->{delay_ms}, injected => $inj->{injected}) : () };
}

# parse the query: ($q, $api_version) or (undef, undef, error)
sub _query {
    my ($query, $e) = @_;
    my %q;
    for my $p (split /&/, $query // '') {
        next if $p eq '';
        my ($k, $v) = split /=/, $p, 2;
        push @{ $q{ lc pct_decode($k) } }, pct_decode($v);
    }
    my $av = $q{'api-version'}
        or return (undef, undef, _err(400, 'The api-version query parameter is missing'));
    return (undef, undef, _err(400, 'api-version given more than once')) if @$av > 1;
    my $api = $av->[0] // '';
    return (undef, undef, _err(400, "The api-version '$api' is not supported (known: @API_VERSIONS)"))
        unless $KNOWN_API{$api};
    $e->{api_version} = $api;
    return (\%q, $api);
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
    my ($fmt, $j, $tag_send) = @_;
    my $kind = $tag_send ? 'a tag send' : 'a direct send';
    if ($fmt eq 'apple') {
        return 'The apple notification body has no "aps" object'
            unless ref $j->{aps} eq 'HASH';
    } elsif ($fmt eq 'fcmv1') {
        my $m = $j->{message};
        return 'The fcmv1 notification body has no "message" object' unless ref $m eq 'HASH';
        return "message.token must not be set for $kind (Notification Hubs fills it)"
            if exists $m->{token};
        for my $w (qw(topic condition)) {
            return "message.$w must not be set for $kind" if exists $m->{$w};
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
    my ($cfg, $req, $hub, $e, $resource) = @_;
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
    my $want_url = lc "$cfg->{host}/$hub/" . ($resource // 'messages');
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
# installations (see INSTALLATIONS in the POD)

my $JSON_TXT = JSON::PP->new->canonical;    # text in, text out (no UTF-8 layer)

sub _iso_ms {
    my ($t) = @_;
    $t //= Time::HiRes::time();
    my @t = gmtime int $t;
    return sprintf '%04d-%02d-%02dT%02d:%02d:%02d.%07dZ', $t[5] + 1900, $t[4] + 1,
        @t[3, 2, 1, 0], int(($t - int $t) * 1e7);
}

# undef when $id can be an installation id, else why not
sub _inst_id_error {
    my ($id) = @_;
    return 'empty' unless defined $id && length $id;
    return "longer than $MAX_ID_LENGTH characters" if length $id > $MAX_ID_LENGTH;
    return 'only printable ASCII without / \\ ? # % { } " is accepted'
        if $id !~ /\A[\x21-\x7e]+\z/ || $id =~ m{[/\\?#%{}"]};
    return undef;
}

sub _user_id_error {
    my ($u) = @_;
    return 'userId must be a string' if ref $u || !_is_string($u);
    return "userId '$u' must be 1-256 characters of A-Z a-z 0-9 - _ \@ # . : ="
        unless $u =~ /\A$USER_ID_RE\z/;
    return undef;
}

# a list of tags (array, or one string when $one_ok): (\@deduplicated) or (undef, error)
sub _tag_list {
    my ($v, $what, $one_ok) = @_;
    $v = [ $v ] if $one_ok && defined $v && !ref $v;
    return (undef, "$what must be an array of tags") unless ref $v eq 'ARRAY';
    my (%seen, @out);
    for my $t (@$v) {
        return (undef, "$what: every tag must be a string") if !defined $t || ref $t || !_is_string($t);
        return (undef, "$what: tag '$t' is not 1-120 characters of A-Z a-z 0-9 _ \@ # . : -")
            unless $t =~ /\A$TAG_RE\z/;
        push @out, $t unless $seen{$t}++;
    }
    return (undef, "$what: " . scalar(@out) . " tags, at most $MAX_TAGS") if @out > $MAX_TAGS;
    return (\@out);
}

sub _push_channel {
    my ($plat, $v) = @_;
    return (undef, 'pushChannel is required') unless defined $v;
    if ($plat eq 'browser') {
        return (undef, 'pushChannel of a browser installation must be an object {endpoint, p256dh, auth}')
            unless ref $v eq 'HASH';
        my %pc;
        for my $k (keys %$v) {
            my ($n) = grep { lc $_ eq lc $k } qw(endpoint p256dh auth);
            return (undef, "pushChannel: unknown property '$k' (endpoint, p256dh, auth)") unless $n;
            $pc{$n} = $v->{$k};
        }
        for my $n (qw(endpoint p256dh auth)) {
            return (undef, "pushChannel.$n must be a non-empty string")
                if !defined $pc{$n} || ref $pc{$n} || !_is_string($pc{$n}) || !length $pc{$n};
        }
        return (undef, 'pushChannel.endpoint must be an https URL') unless $pc{endpoint} =~ m{\Ahttps://\S+\z};
        return (\%pc);
    }
    return (undef, "pushChannel of a $plat installation must be a non-empty string")
        if ref $v || !_is_string($v) || !length $v;
    return (undef, 'pushChannel must not contain white space') if $v =~ /\s/;
    return (undef, "pushChannel '$v' is not a valid APNs token (hex)")
        if $plat eq 'apns' && $v !~ /\A[0-9A-Fa-f]+\z/;
    return (undef, 'pushChannel of a wns installation must be an https URL')
        if $plat eq 'wns' && $v !~ m{\Ahttps://};
    return ($v);
}

my %INST_FIELDS = map { lc($_) => $_ } qw(installationId userId platform pushChannel tags
    templates pushVariables expirationTime lastActiveOn lastUpdate pushChannelExpired
    expiredPushChannel secondaryTiles);
my %TPL_FIELDS = map { $_ => $_ } qw(body headers expiry tags);

# validate a PUT body: (\%normalized) or (undef, error)
sub _inst_validate {
    my ($b, $path_id) = @_;
    return (undef, 'the installation must be a JSON object') unless ref $b eq 'HASH';
    my %f;
    for my $k (sort keys %$b) {
        my $canon = $INST_FIELDS{ lc $k } // return (undef, "unknown installation property '$k'");
        return (undef, "property '$canon' given twice (names are not case-sensitive)")
            if exists $f{$canon};
        $f{$canon} = $b->{$k};
    }
    return (undef, 'secondaryTiles are not modelled by the stand-in') if defined $f{secondaryTiles};
    my $id = $f{installationId};
    return (undef, 'installationId is required') unless defined $id;
    return (undef, 'installationId must be a string') if ref $id || !_is_string($id);
    my $ierr = _inst_id_error($id);
    return (undef, "installationId '$id': $ierr") if $ierr;
    return (undef, "installationId '$id' differs from the id in the URL '$path_id'")
        if defined $path_id && $id ne $path_id;
    my $pf = $f{platform};
    return (undef, 'platform is required') unless defined $pf;
    return (undef, 'platform must be a string') if ref $pf || !_is_string($pf);
    my $plat = lc $pf;
    return (undef, "platform '$pf' is not one of " . join(', ', sort keys %INST_PLATFORMS))
        unless $INST_PLATFORMS{$plat};
    my %n = (installationId => $id, platform => $plat);
    my ($pc, $perr) = _push_channel($plat, $f{pushChannel});
    return (undef, $perr) if $perr;
    $n{pushChannel} = $pc;
    if (defined $f{userId}) {
        my $uerr = _user_id_error($f{userId});
        return (undef, $uerr) if $uerr;
        $n{userId} = $f{userId};
    }
    if (defined $f{tags}) {
        my ($t, $terr) = _tag_list($f{tags}, 'tags');
        return (undef, $terr) if $terr;
        $n{tags} = $t if @$t;
    }
    if (defined $f{templates}) {
        return (undef, 'templates must be a JSON object') unless ref $f{templates} eq 'HASH';
        for my $name (sort keys %{ $f{templates} }) {
            my ($t, $terr) = _template_validate($plat, $name, $f{templates}{$name});
            return (undef, $terr) if $terr;
            $n{templates}{$name} = $t;
        }
    }
    if (defined $f{pushVariables}) {
        my $pv = $f{pushVariables};
        return (undef, 'pushVariables must be an object of strings') unless ref $pv eq 'HASH';
        for my $k (sort keys %$pv) {
            return (undef, "pushVariables.$k must be a string")
                if !defined $pv->{$k} || ref $pv->{$k} || !_is_string($pv->{$k});
        }
        $n{pushVariables} = { %$pv } if %$pv;
    }
    # read-only properties: accepted with the right type, then ignored
    for my $ro (qw(expirationTime lastActiveOn lastUpdate)) {
        return (undef, "$ro (read-only) must be a string")
            if defined $f{$ro} && (ref $f{$ro} || !_is_string($f{$ro}));
    }
    for my $ro (qw(pushChannelExpired expiredPushChannel)) {
        return (undef, "$ro (read-only) must be a boolean")
            if defined $f{$ro} && !JSON::PP::is_bool($f{$ro});
    }
    $n{lastUpdate} = _iso_ms();
    return (\%n);
}

# validate one template: (\%normalized) or (undef, error)
sub _template_validate {
    my ($plat, $name, $t) = @_;
    return (undef, "template name '$name' is not 1-120 characters of A-Z a-z 0-9 _ \@ # . : - "
                   . '(the stand-in also uses it as a tag)')
        unless $name =~ /\A$TAG_RE\z/;
    my $w = "templates.$name";
    return (undef, "$w must be an object {body, headers, expiry, tags}") unless ref $t eq 'HASH';
    my %f;
    for my $k (sort keys %$t) {
        my $canon = $TPL_FIELDS{ lc $k } // return (undef, "$w: unknown property '$k' (body, headers, expiry, tags)");
        return (undef, "$w: property '$canon' given twice") if exists $f{$canon};
        $f{$canon} = $t->{$k};
    }
    my $body = $f{body};
    return (undef, "$w.body is required and must be a non-empty string")
        if !defined $body || ref $body || !_is_string($body) || !length $body;
    my %n = (body => $body);
    if (defined $f{headers}) {
        return (undef, "$w.headers: only wns templates have headers") unless $plat eq 'wns';
        return (undef, "$w.headers must be an object of strings") unless ref $f{headers} eq 'HASH';
        for my $hn (sort keys %{ $f{headers} }) {
            my $hv = $f{headers}{$hn};
            return (undef, "$w.headers.$hn must be a string") if !defined $hv || ref $hv || !_is_string($hv);
            return (undef, "$w.headers: '$hn' is not a header name") unless $hn =~ /\A$TOKEN\z/;
        }
        $n{headers} = { %{ $f{headers} } };
    }
    if ($plat eq 'wns') {
        my ($wt) = map { lc $n{headers}{$_} } grep { lc $_ eq 'x-wns-type' } keys %{ $n{headers} // {} };
        return (undef, "$w: a wns template needs an X-WNS-Type header (wns/toast, wns/tile, wns/badge, wns/raw)")
            unless defined $wt && $WNS_TYPES{$wt};
        return (undef, "$w.body of a $wt template must be XML")
            if $wt ne 'wns/raw' && $body !~ /\A\s*</;
    } else {
        my $j = eval { $JSON_TXT->decode($body) };
        return (undef, "$w.body of a $plat template must be a JSON object")
            unless ref $j eq 'HASH';
    }
    if (defined $f{expiry}) {
        return (undef, "$w.expiry: only apns templates have an expiry") unless $plat eq 'apns';
        return (undef, "$w.expiry must be a string") if ref $f{expiry} || !_is_string($f{expiry});
        $n{expiry} = $f{expiry};
    }
    if (defined $f{tags}) {
        my ($tl, $terr) = _tag_list($f{tags}, "$w.tags");
        return (undef, $terr) if $terr;
        $n{tags} = $tl if @$tl;
    }
    my $x = _tpl_expand($plat, \%n, undef);
    return (undef, "$w: $x->{errors}[0]") if @{ $x->{errors} };
    return (\%n);
}

# an installation as GET answers it (a copy)
sub _inst_view {
    my ($i) = @_;
    my $v = $JSON_IN->decode($JSON_OUT->encode($i));
    $v->{pushChannelExpired} = JSON::PP::false;
    $v->{expirationTime}     = $NEVER_EXPIRES;
    return $v;
}

# ---------------------------------------------------------------------------
# installations file, shared by every connection process (flock)

sub _store_read {
    my ($cfg) = @_;
    open(my $fh, '<:raw', $cfg->{store}) or return {};
    flock($fh, LOCK_SH);
    local $/;
    my $txt = <$fh>;
    close $fh;
    my $s = (defined $txt && length $txt) ? eval { $JSON_IN->decode($txt) } : undef;
    return ref $s eq 'HASH' ? $s : {};
}

# $fn->($store) returns ($changed, @rest); the store is rewritten when changed
sub _store_update {
    my ($cfg, $fn) = @_;
    open(my $fh, '+>>:raw', $cfg->{store}) or die "$cfg->{store}: $!";
    flock($fh, LOCK_EX) or die "flock: $!";
    seek($fh, 0, SEEK_SET);
    my $txt = do { local $/; <$fh> };
    my $s = (defined $txt && length $txt) ? eval { $JSON_IN->decode($txt) } : undef;
    $s = {} unless ref $s eq 'HASH';
    my @r = $fn->($s);
    if ($r[0]) {
        truncate($fh, 0);
        print {$fh} $JSON_OUT->encode($s);
    }
    close $fh or die "$cfg->{store}: $!";
    return @r;
}

# ---------------------------------------------------------------------------
# /{hub}/installations/{id}: PUT, GET, PATCH, DELETE

sub _installation_request {
    my ($cfg, $c, $req, $e, $path, $query, $rawhub, $rawid) = @_;
    my $m = $req->{method};
    $e->{op} = 'installation-' . lc $m;
    my $hub = $cfg->{hubs}{ lc pct_decode($rawhub) }
        // return _err(404, "hub '$rawhub' does not exist in namespace $cfg->{namespace}");
    $e->{hub} = $hub;
    return _err(405, "method $m not allowed on $path", headers => [ Allow => 'GET, PUT, PATCH, DELETE' ])
        unless $m =~ /\A(?:GET|PUT|PATCH|DELETE)\z/;
    (my $id = $rawid) =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    utf8::decode($id);
    $e->{installation_id} = $id;
    my $ierr = _inst_id_error($id);
    return _err(400, "Invalid installation id '$id': $ierr") if $ierr;
    my ($q, $api, $qerr) = _query($query, $e);
    return $qerr if $qerr;

    my ($k, $err) = _check_sas($cfg, $req, $hub, $e, "installations/$id");
    return $err if $err;
    unless ($k->{rights}{listen}) {
        return { status => 403, empty => 1,
                 detail => "rule '$e->{sas}{skn}' lacks the Listen right (has $k->{rights_text})" }
            if $api eq $API_VERSION;
        return _err(401, "Unauthorized: the rule '$e->{sas}{skn}' lacks the Listen claim");
    }

    my $h  = $req->{headers};
    my $xv = $h->{'x-ms-version'};
    return _err(400, "x-ms-version header must be one of @API_VERSIONS, got "
                     . (defined $xv ? "'$xv'" : 'none'))
        unless defined $xv && $KNOWN_API{$xv};
    my ($j, $n);
    if ($m eq 'PUT' || $m eq 'PATCH') {
        my ($ct, $cp) = _content_type($h->{'content-type'});
        my @want = $m eq 'PUT' ? ('application/json') : ('application/json-patch+json', 'application/json');
        return _err(415, "Content-Type for $m of an installation must be " . join(' or ', @want)
                         . ', got ' . ($h->{'content-type'} // 'none'))
            unless defined $ct && (grep { $ct eq $_ } @want)
                && (!defined $cp->{charset} || lc $cp->{charset} eq 'utf-8');
        my $body = $req->{body} // '';
        my $blen = length $body;
        return _err(413, "request body of $blen bytes exceeds $MAX_REQUEST_BODY bytes")
            if $blen > $MAX_REQUEST_BODY;
        return _err(400, "The $m body is empty") unless $blen;
        $j = eval { $JSON_IN->decode($body) };
        return _err(400, "The $m body is not valid JSON") unless defined $j;
        if ($m eq 'PUT') {
            my $verr;
            ($n, $verr) = _inst_validate($j, $id);
            return _err(400, "Invalid installation: $verr") if $verr;
        } else {
            return _err(400, 'The PATCH body must be a JSON Patch array of operations')
                unless ref $j eq 'ARRAY';
        }
    }

    my $inj = _injection($cfg, $e, { installation => $id, path => $path, method => $m });
    return $inj if $inj && !$inj->{proceed};
    my %x = $inj ? (delay_ms => $inj->{delay_ms}, injected => $inj->{injected}) : ();
    my @cl = ('Content-Location' => "https://$cfg->{host}/$hub/installations/$rawid");
    my $lhub = lc $hub;

    if ($m eq 'PUT') {
        my (undef, $existed) = _store_update($cfg, sub {
            my $had = exists $_[0]{$lhub}{$id};
            $_[0]{$lhub}{$id} = $n;
            return (1, $had);
        });
        return { status => 200, ok => 1, headers => \@cl, %x,
                 detail => ($existed ? 'installation overwritten' : 'installation created') };
    }
    if ($m eq 'GET') {
        my $i = _store_read($cfg)->{$lhub}{$id}
            or return _err(404, "Installation Not Found: '$id'", %x);
        return { status => 200, ok => 1, headers => \@cl, %x, detail => 'installation read',
                 body => $JSON_OUT->encode(_inst_view($i)), ctype => 'application/json; charset=utf-8' };
    }
    if ($m eq 'DELETE') {
        my ($had) = _store_update($cfg, sub {
            my $had = delete $_[0]{$lhub}{$id};
            delete $_[0]{$lhub} if $_[0]{$lhub} && !%{ $_[0]{$lhub} };
            return ($had ? 1 : 0);
        });
        $e->{existed} = $had ? JSON::PP::true : JSON::PP::false;
        return { status => 204, ok => 1, %x,
                 detail => $had ? 'installation deleted' : 'no such installation (204 all the same)' };
    }
    my (undef, $st, $perr) = _store_update($cfg, sub {
        my $cur = $_[0]{$lhub}{$id} or return (0, 404);
        my $copy = $JSON_IN->decode($JSON_OUT->encode($cur));
        my $err = _inst_patch($copy, $j);
        return (0, 400, $err) if $err;
        $copy->{lastUpdate} = _iso_ms();
        $_[0]{$lhub}{$id} = $copy;
        return (1, 200);
    });
    return _err(404, "Installation Not Found: '$id'", %x) if $st == 404;
    return _err(400, "Invalid JSON Patch: $perr", %x) if $st == 400;
    return { status => 200, ok => 1, headers => \@cl, %x, detail => 'installation patched' };
}

# ---------------------------------------------------------------------------
# JSON Patch (RFC 6902) on an installation, with NH's paths and semantics

sub _inst_patch {
    my ($i, $ops) = @_;
    for my $k (0 .. $#$ops) {
        my $op = $ops->[$k];
        my $w  = "operation $k";
        return "$w is not an object" unless ref $op eq 'HASH';
        my $name = $op->{op};
        return "$w has no \"op\"" unless defined $name && !ref $name;
        return "$w: op '$name' is not supported by Notification Hubs (add, remove, replace)"
            unless $name =~ /\A(?:add|remove|replace)\z/;
        my $path = $op->{path};
        return "$w has no \"path\" starting with /" unless defined $path && !ref $path && $path =~ m{\A/};
        return "$w ($name $path) has no \"value\"" if $name ne 'remove' && !exists $op->{value};
        my @seg = map { my $s = $_; $s =~ s/~1/\//g; $s =~ s/~0/~/g; $s } split m{/}, substr($path, 1), -1;
        my $err = _patch_one($i, $name, \@seg, $op->{value});
        return "$w ($name $path): $err" if $err;
    }
    return undef;
}

sub _patch_tags {
    my ($obj, $key, $op, $rest, $v, $what) = @_;
    if (!@$rest) {
        if ($op eq 'remove') {
            return "no $what to remove" unless $obj->{$key};
            delete $obj->{$key};
            return undef;
        }
        my ($t, $err) = _tag_list($v, $what, 1);
        return $err if $err;
        if ($op eq 'replace') {
            return "no $what to replace" unless $obj->{$key};
            $obj->{$key} = $t;
        } else {
            my ($all, $aerr) = _tag_list([ @{ $obj->{$key} // [] }, @$t ], $what);
            return $aerr if $aerr;
            $obj->{$key} = $all;
        }
        delete $obj->{$key} unless @{ $obj->{$key} };
        return undef;
    }
    return "no such path under $what" if @$rest > 1;
    my $tag = $rest->[0];
    if ($tag eq '-') {
        return "only add appends to $what" unless $op eq 'add';
        return "the value of add $what/- must be one tag (a string)" if ref $v;
        return _patch_tags($obj, $key, 'add', [], $v, $what);
    }
    return "use add on $what (add $what/TAG is not a Notification Hubs path)" if $op eq 'add';
    my $cur = $obj->{$key} // [];
    return "$what has no tag '$tag'" unless grep { $_ eq $tag } @$cur;
    my @left = grep { $_ ne $tag } @$cur;
    if ($op eq 'replace') {
        return "the value of replace $what/TAG must be one tag (a string)" if ref $v;
        my ($all, $err) = _tag_list([ @left, $v ], $what);
        return $err if $err;
        @left = @$all;
    }
    if (@left) { $obj->{$key} = \@left } else { delete $obj->{$key} }
    return undef;
}

sub _patch_one {
    my ($i, $op, $seg, $v) = @_;
    my $top = lc($seg->[0] // '');
    my @rest = @$seg[ 1 .. $#$seg ];
    if ($top eq 'pushchannel' && !@rest) {
        return 'pushChannel cannot be removed' if $op eq 'remove';
        my ($pc, $err) = _push_channel($i->{platform}, $v);
        return $err if $err;
        $i->{pushChannel} = $pc;
        return undef;
    }
    if ($top eq 'userid' && !@rest) {
        return 'the installation has no userId' if $op ne 'add' && !defined $i->{userId};
        if ($op eq 'remove') { delete $i->{userId}; return undef }
        my $err = _user_id_error($v);
        return $err if $err;
        $i->{userId} = $v;
        return undef;
    }
    if ($top eq 'tags') {
        return _patch_tags($i, 'tags', $op, \@rest, $v, '/tags');
    }
    if ($top eq 'templates' && @rest) {
        my $name = shift @rest;
        my $t = $i->{templates}{$name};
        if (!@rest) {
            if ($op eq 'remove' || $op eq 'replace') {
                return "no template '$name'" unless $t;
                delete $i->{templates}{$name};
            }
            if ($op ne 'remove') {
                my ($n, $err) = _template_validate($i->{platform}, $name, $v);
                return $err if $err;
                $i->{templates}{$name} = $n;
            }
            delete $i->{templates} unless %{ $i->{templates} };
            return undef;
        }
        return "no template '$name'" unless $t;
        my $part = lc shift @rest;
        my $new = $JSON_IN->decode($JSON_OUT->encode($t));
        if ($part eq 'tags') {
            my $err = _patch_tags($new, 'tags', $op, \@rest, $v, "/templates/$name/tags");
            return $err if $err;
        } elsif (@rest || !$TPL_FIELDS{$part}) {
            return 'not a path Notification Hubs patches';
        } elsif ($op eq 'remove') {
            return "templates.$name.body cannot be removed" if $part eq 'body';
            return "template '$name' has no $part" unless exists $new->{$part};
            delete $new->{$part};
        } else {
            return "template '$name' has no $part to replace" if $op eq 'replace' && !exists $new->{$part};
            $new->{$part} = $v;
        }
        delete $i->{templates}{$name};
        my ($n, $err) = _template_validate($i->{platform}, $name, $new);
        return $err if $err;
        $i->{templates}{$name} = $n;
        return undef;
    }
    return 'not a path Notification Hubs patches (pushChannel, userId, tags, tags/-, tags/TAG, '
         . 'templates/NAME, templates/NAME/body|headers|expiry|tags)';
}

# ---------------------------------------------------------------------------
# tag expressions: TAG, !, &&, ||, ( ); $InstallationId:{id}, $UserId:{id}

sub _tag_expr_parse {
    my ($s) = @_;
    return (undef, 'empty expression') unless defined $s && $s =~ /\S/;
    my @t;
    pos($s) = 0;
    while (1) {
        $s =~ /\G\s+/gc;
        last if pos($s) >= length $s;
        if ($s =~ /\G(&&|\|\||!|\(|\))/gc) {
            push @t, [ $1 ];
        } elsif ($s =~ /\G(\$InstallationId:\{([^{}]*)\})/gc) {
            my ($tag, $id) = ($1, $2);
            my $err = _inst_id_error($id);
            return (undef, "'$tag': installation id $err") if $err;
            push @t, [ tag => $tag ];
        } elsif ($s =~ /\G(\$UserId:\{([^{}]*)\})/gc) {
            my ($tag, $u) = ($1, $2);
            return (undef, "'$tag': not a userId") unless $u =~ /\A$USER_ID_RE\z/;
            push @t, [ tag => $tag ];
        } elsif ($s =~ /\G([A-Za-z0-9_\@#.:\-]+)/gc) {
            return (undef, "tag '$1' is longer than 120 characters") if length $1 > 120;
            push @t, [ tag => $1 ];
        } else {
            my $at = pos($s);
            return (undef, "unexpected '" . substr($s, $at, 12) . "' at offset $at");
        }
    }
    my ($i, $ntags, $ands) = (0, 0, 0);
    my ($or, $and, $unary);
    my $peek = sub { $i < @t ? $t[$i][0] : '' };
    $unary = sub {
        my $k = $peek->();
        if ($k eq '!') { $i++; $ands++; return [ 'not', $unary->() ] }
        if ($k eq '(') {
            $i++;
            my $x = $or->();
            die "missing )\n" unless $peek->() eq ')';
            $i++;
            return $x;
        }
        if ($k eq 'tag') { $ntags++; return [ 'tag', $t[ $i++ ][1] ] }
        die($k eq '' ? "expression ends where a tag was expected\n" : "'$k' where a tag was expected\n");
    };
    $and = sub {
        my $x = $unary->();
        while ($peek->() eq '&&') { $i++; $ands++; $x = [ 'and', $x, $unary->() ] }
        return $x;
    };
    $or = sub {
        my $x = $and->();
        while ($peek->() eq '||') { $i++; $x = [ 'or', $x, $and->() ] }
        return $x;
    };
    my $ast = eval {
        my $x = $or->();
        die "unexpected '$t[$i][0]'" . ($t[$i][0] eq 'tag' ? " '$t[$i][1]'" : '') . "\n" if $i < @t;
        $x;
    };
    if (!$ast) {
        (my $m = $@) =~ s/\n\z//;
        return (undef, $m);
    }
    my $max = $ands ? $MAX_EXPR_TAGS : $MAX_EXPR_TAGS_OR;
    return (undef, "$ntags tags; an expression is limited to $MAX_EXPR_TAGS_OR tags when it "
                   . "contains only ||, else to $MAX_EXPR_TAGS")
        if $ntags > $max;
    undef $or; undef $and; undef $unary;    # break the closures' cycle
    return ({ ast => $ast, count => $ntags, only_or => $ands ? 0 : 1 });
}

sub _tag_expr_eval {
    my ($x, $set) = @_;
    my $k = $x->[0];
    return $set->{ $x->[1] } ? 1 : 0 if $k eq 'tag';
    return _tag_expr_eval($x->[1], $set) ? 0 : 1 if $k eq 'not';
    return _tag_expr_eval($x->[1], $set) && _tag_expr_eval($x->[2], $set) ? 1 : 0 if $k eq 'and';
    return _tag_expr_eval($x->[1], $set) || _tag_expr_eval($x->[2], $set) ? 1 : 0;
}

# ---------------------------------------------------------------------------
# templates: $(p) $(p, n) .(p, n) %(p) #(p) 'text' "text" and {a + b}

my $TPL_FUNC = qr/(?<f>[\$.%#])\(\s*(?<p>[A-Za-z0-9_.\-]+)\s*(?:,\s*(?<n>\d+)\s*)?\)/;

sub _tpl_call {
    my ($f, $name, $n, $props) = @_;
    return (undef, "$f($name, $n): only \$( ) and .( ) take a length")
        if defined $n && ($f eq '%' || $f eq '#');
    return (undef, ".($name): .( ) needs a length, as in .($name, 20)") if $f eq '.' && !defined $n;
    return (undef, "$f($name, $n): the length must be at least 1") if defined $n && $n < 1;
    my $v = $props ? $props->{ lc $name } // '' : '';
    return (substr($v, 0, $n)) if $f eq '$' && defined $n;
    return ($v) if $f eq '$' || $f eq '#';
    return (pct_encode($v)) if $f eq '%';
    return ($v) if length $v <= $n;
    return ($n > 3 ? substr($v, 0, $n - 3) . '...' : '.' x $n);
}

# one template value (a JSON string value, an XML text or attribute value, a
# header value): ($text, undef, $numeric, $was_expression) or (undef, error)
sub _tpl_value {
    my ($s, $props) = @_;
    if ($s =~ /\A\s*$TPL_FUNC\s*\z/) {
        my ($f, $pn, $n) = @+{qw(f p n)};
        my ($v, $err) = _tpl_call($f, $pn, $n, $props);
        return (undef, $err) if defined $err;
        return ($v, undef, $f eq '#', 1);
    }
    if ($s =~ /\A\s*\{(.*)\}\s*\z/s) {
        my $x = $1;
        my ($out, $want) = ('', 1);
        pos($x) = 0;
        while (1) {
            $x =~ /\G\s+/gc;
            last if pos($x) >= length $x;
            if ($want) {
                if ($x =~ /\G$TPL_FUNC/gc) {
                    my ($f, $pn, $n) = @+{qw(f p n)};
                    my ($v, $err) = _tpl_call($f, $pn, $n, $props);
                    return (undef, $err) if defined $err;
                    $out .= $v;
                } elsif ($x =~ /\G'([^']*)'/gc || $x =~ /\G"([^"]*)"/gc) {
                    $out .= $1;
                } else {
                    return (undef, "'{$x}': expected \$(prop), .(prop, n), %(prop), #(prop) or a "
                                   . "quoted literal at '" . substr($x, pos($x)) . "'");
                }
                $want = 0;
            } else {
                $x =~ /\G\+/gc
                    or return (undef, "'{$x}': expected + at '" . substr($x, pos($x)) . "'");
                $want = 1;
            }
        }
        return (undef, "'{$x}': the expression is empty or ends with +") if $want;
        return ($out, undef, 0, 1);
    }
    return (undef, "'$s': an expression must be the whole value (concatenate inside "
                   . "{'text' + \$(prop)}); the stand-in refuses expressions inside text")
        if $s =~ /[\$%#]\(/ || $s =~ /\.\(\s*[A-Za-z0-9_.\-]+\s*,\s*\d+\s*\)/;
    return ($s, undef, 0, 0);
}

sub _tpl_json {
    my ($node, $props, $errs) = @_;
    if (ref $node eq 'HASH') {
        my %o;
        for my $k (sort keys %$node) {
            push @$errs, "'$k': expressions are only allowed in JSON string values, not in keys"
                if $k =~ /[\$%#]\(|\A\s*\{.*\}\s*\z|\.\(\s*[A-Za-z0-9_.\-]+\s*,/s;
            $o{$k} = _tpl_json($node->{$k}, $props, $errs);
        }
        return \%o;
    }
    return [ map { _tpl_json($_, $props, $errs) } @$node ] if ref $node eq 'ARRAY';
    return $node if ref $node || !defined $node || !_is_string($node);
    my ($v, $err, $num) = _tpl_value($node, $props);
    if (defined $err) { push @$errs, $err; return $node }
    return 0 + $v if $num && $v =~ /\A(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\z/;
    return $v;
}

sub _tpl_xml {
    my ($xml, $props, $errs) = @_;
    my $out = '';
    pos($xml) = 0;
    while (pos($xml) < length $xml) {
        if ($xml =~ /\G(<!--.*?-->|<!\[CDATA\[.*?\]\]>|<[?!][^>]*>)/gcs) {
            $out .= $1;
        } elsif ($xml =~ /\G<([^>]*)>/gc) {
            my $tag = $1;
            my $o = '';
            pos($tag) = 0;
            while (pos($tag) < length $tag) {
                if ($tag =~ /\G(["'])/gc) {
                    my $qc = $1;
                    $tag =~ /\G([^$qc]*)$qc/gc
                        or do { push @$errs, "unbalanced quote in <$tag>"; last };
                    my $val = $1;
                    my ($v, $err, undef, $isx) = _tpl_value($val, $props);
                    push @$errs, $err if defined $err;
                    $o .= $qc . ($isx ? _xml_escape($v) : $val) . $qc;
                } elsif ($tag =~ /\G([^"']+)/gc) {
                    my $raw = $1;
                    push @$errs, "<$tag>: expressions are only allowed in attribute values and text"
                        if $raw =~ /[\$%#]\(|[{}]|\.\(\s*[A-Za-z0-9_.\-]+\s*,/;
                    $o .= $raw;
                }
            }
            $out .= "<$o>";
        } elsif ($xml =~ /\G([^<]+)/gc) {
            my $text = $1;
            my ($lead, $mid, $trail) = $text =~ /\A(\s*)(.*?)(\s*)\z/s;
            my ($v, $err, undef, $isx) = length $mid ? _tpl_value($mid, $props) : ('', undef, 0, 0);
            push @$errs, $err if defined $err;
            $out .= $isx ? $lead . _xml_escape($v) . $trail : $text;
        } else {
            push @$errs, "malformed XML at '" . substr($xml, pos($xml), 20) . "'";
            last;
        }
    }
    return $out;
}

# expand a template for an installation's platform: {payload, headers, expiry, errors}
sub _tpl_expand {
    my ($plat, $t, $props) = @_;
    my @errs;
    my %hd;
    for my $hn (sort keys %{ $t->{headers} // {} }) {
        my ($v, $err) = _tpl_value($t->{headers}{$hn}, $props);
        push @errs, "header $hn: $err" if defined $err;
        $hd{ lc $hn } = $v // '';
    }
    my $payload;
    if ($plat eq 'wns') {
        if (($hd{'x-wns-type'} // '') eq 'wns/raw') {
            my ($v, $err) = _tpl_value($t->{body}, $props);
            push @errs, $err if defined $err;
            $payload = $v // '';
            $hd{'content-type'} = 'application/octet-stream';
        } else {
            $payload = _tpl_xml($t->{body}, $props, \@errs);
            $hd{'content-type'} = 'application/xml';
        }
    } else {
        my $j = eval { $JSON_TXT->decode($t->{body}) };
        if (ref $j eq 'HASH') {
            $payload = $JSON_TXT->encode(_tpl_json($j, $props, \@errs));
        } else {
            push @errs, 'the template body is not a JSON object';
            $payload = $t->{body};
        }
        $hd{'content-type'} = 'application/json';
    }
    my $expiry;
    if (defined $t->{expiry}) {
        my $err;
        ($expiry, $err) = _tpl_value($t->{expiry}, $props);
        push @errs, "expiry: $err" if defined $err;
    }
    return { payload => $payload, headers => \%hd, expiry => $expiry, errors => \@errs };
}

# ---------------------------------------------------------------------------
# tag sends: which installations (and templates) a send reaches

# the request headers NH passes on to a platform
sub _pass_headers {
    my ($plat, $h) = @_;
    my $re = $plat eq 'apns' ? qr/\Aapns-/ : $plat eq 'wns' ? qr/\Ax-wns-/ : undef;
    return {} unless $re;
    return { map { $_ => _text($h->{$_}) } grep { $_ =~ $re } keys %$h };
}

sub _fan_out {
    my ($cfg, $req, $hub, $fmt, $expr, $props) = @_;
    my $st = _store_read($cfg)->{ lc $hub } // {};
    my $h  = $req->{headers};
    my @d;
    for my $id (sort keys %$st) {
        my $i = $st->{$id};
        my %set = map { $_ => 1 } @{ $i->{tags} // [] };
        $set{"\$InstallationId:{$id}"} = 1;
        $set{"\$UserId:{$i->{userId}}"} = 1 if defined $i->{userId};
        my @reach;
        if ($props) {
            for my $name (sort keys %{ $i->{templates} // {} }) {
                my $t = $i->{templates}{$name};
                my %tset = (%set, $name => 1, map { $_ => 1 } @{ $t->{tags} // [] });
                next unless _tag_expr_eval($expr->{ast}, \%tset);
                my $x = _tpl_expand($i->{platform}, $t, $props);
                my %hd = (%{ _pass_headers($i->{platform}, $h) }, %{ $x->{headers} });
                push @reach, [ $name, $x->{payload}, \%hd, $x->{expiry}, $x->{errors} ];
            }
        } else {
            next unless $i->{platform} eq $FORMAT_PLATFORM{$fmt};
            next unless _tag_expr_eval($expr->{ast}, \%set);
            my %hd = %{ _pass_headers($i->{platform}, $h) };
            $hd{'content-type'} = _text($h->{'content-type'});
            push @reach, [ undef, _text($req->{body}), \%hd, undef, [] ];
        }
        for my $r (@reach) {
            my ($name, $payload, $hd, $expiry, $errs) = @$r;
            my $pc = $i->{pushChannel};
            if ($i->{platform} eq 'browser') {
                $hd->{auth}   = $pc->{auth};
                $hd->{p256dh} = $pc->{p256dh};
            }
            my $bytes = $payload;
            utf8::encode($bytes);
            my $limit = $FORMATS{ $PLATFORM_FORMAT{ $i->{platform} } };
            my $dropped = @$errs ? "template error: $errs->[0]"
                        : length $bytes > $limit ? 'payload of ' . length($bytes) . " bytes exceeds $limit bytes"
                        : undef;
            my $json = $i->{platform} eq 'wns' ? undef : eval { $JSON_TXT->decode($payload) };
            push @d, {
                hub             => $hub,
                installation_id => $id,
                platform        => $i->{platform},
                format          => $fmt,
                template        => $name,
                push_channel    => $pc,
                ($i->{userId} ? (user_id => $i->{userId}) : ()),
                payload         => $payload,
                json            => ref $json ? $json : undef,
                headers         => $hd,
                (defined $expiry ? (expiry => $expiry) : ()),
                ($dropped ? (dropped => $dropped) : ()),
            };
        }
    }
    return @d;
}

# ---------------------------------------------------------------------------
# failure injection

# failure injection.  $ctx: {handle} (direct sends), {installation} (installation
# requests), {tags} (tag sends), {path}, {method}.  Returns undef (no failure),
# a response, or {proceed => 1, delay_ms} for a rule with a 2xx status on an
# installation request or a tag send (answer normally, after delay_ms).
sub _injection {
    my ($cfg, $e, $ctx) = @_;
    my ($rules, $stamp, $rerr) = _rules($cfg);
    return { status => 500, detail => "stand-in: bad $cfg->{rules}: $rerr" } if $rerr;
    my $key = $ctx->{handle} // $ctx->{installation} // $ctx->{tags} // $ctx->{path};
    my $lkey = lc $key;
    RULE: for my $i (0 .. $#$rules) {
        my $r = $rules->[$i];
        for my $sel ([ prefix => 'handle' ], [ installation => 'installation' ],
                     [ tags => 'tags' ], [ path => 'path' ]) {
            my ($rk, $ck) = @$sel;
            next unless defined $r->{$rk};
            next RULE unless defined $ctx->{$ck};
            if ($rk eq 'tags' || $rk eq 'path') {
                next RULE unless index($ctx->{$ck}, $r->{$rk}) == 0;
            } else {
                next RULE unless index(lc $ctx->{$ck}, lc $r->{$rk}) == 0;
            }
        }
        next if defined $r->{method} && uc $r->{method} ne uc($ctx->{method} // '');
        next if defined $r->{format} && lc $r->{format} ne ($e->{format} // '');
        next if defined $r->{hub} && lc $r->{hub} ne lc($e->{hub} // '');
        if ($r->{times}) {
            my $n = _bump($cfg, "rule:$stamp:$i" . ($r->{per_handle} ? ":$lkey" : ''));
            $e->{attempt} = $n + 1;
            return undef if $n >= $r->{times};
        }
        my $st  = $r->{status} // 503;
        my $sel = join ',', map { "$_ $r->{$_}" } grep { defined $r->{$_} } qw(prefix installation tags path);
        my %o   = (injected => "rules.json[$i]:" . ($r->{prefix} // $sel));
        $o{delay_ms} = $r->{delay_ms} if $r->{delay_ms};
        $o{headers}  = [ 'Retry-After' => $r->{retry_after} ] if defined $r->{retry_after};
        $o{empty}    = 1 if $r->{empty_body} || $st eq '403';
        return { %o, action => $st } if $st eq 'hang' || $st eq 'reset';
        return { %o, proceed => 1 } if $st =~ /^2/ && !defined $ctx->{handle};
        return { %o, status => 201, detail => 'accepted (rule delay)' } if $st == 201;
        return { %o, status => $st,
                 detail => $r->{detail} // "injected by rules.json rule $i ($sel)" };
    }
    return undef unless defined $ctx->{handle};
    for my $inj (@INJECT) {
        my ($p, $s) = @$inj;
        next unless index($lkey, $p) == 0;
        if ($s->{times}) {
            my $n = _bump($cfg, "handle:$lkey");
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
                if (ref $r ne 'HASH'
                    || !grep { defined $r->{$_} && !ref $r->{$_} && length $r->{$_} }
                            qw(prefix installation tags path)) {
                    $err = 'every rule needs a non-empty "prefix", "installation", "tags" or "path"';
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

# append entries (a request and its deliveries) in one locked write
sub _journal {
    my ($cfg, @e) = @_;
    my $out = join '', map { _journal_line($cfg, $_) . "\n" } @e;
    open(my $fh, '>>:raw', $cfg->{journal}) or die "$cfg->{journal}: $!";
    flock($fh, LOCK_EX) or die "flock: $!";
    syswrite($fh, $out);
    close $fh;
}

sub _journal_line {
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
    return $line;
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
    if (defined $r->{body}) {
        $body = $r->{body};
        push @h, 'Content-Type' => $r->{ctype} if $r->{ctype};
    } elsif ($st != 201 && !$r->{ok} && !$r->{empty}) {
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

AcsTest::FakeNH - a strict HTTPS stand-in for Azure Notification Hubs: direct sends, installations, tag and template sends

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

    # installations and tag sends
    $nh->installation_path('dev-1');      # /acs-push/installations/dev-1?api-version=2020-06
    $nh->tag_send_path;                   # /acs-push/messages/?api-version=2020-06
    $nh->add_installation({ installationId => 'dev-1', platform => 'apns',
                            pushChannel => 'ab' x 32, tags => ['user:42'] });
    $nh->installation('dev-1');           # as GET answers it, or undef
    $nh->installations;                   # all of them, each with "hub"
    $nh->clear_installations;
    my @d = $nh->wait_deliveries(1, 5);   # fan-out entries of tag sends
    $nh->stop;                # also done by DESTROY and END

    AcsTest::FakeNH::sas_token($key_name, $key_text, $uri, $se);
    AcsTest::FakeNH::sas_signature($key_text, $sr_encoded, $se);

=head1 DESCRIPTION

The only fake in the project: an HTTP/1.1-over-TLS server on 127.0.0.1
that accepts exactly what the real Notification Hubs data plane accepts for
a I<direct send> (F<docs/dispatch.md>), for I<installations>
(create or overwrite, read, JSON-Patch update, delete; see
L</INSTALLATIONS>) and for I<tag> and I<template sends> to those installations
(L</TAG SENDS>), and answers each wrong
request as NH does: status, C<< <Error><Code>nnn</Code><Detail>...</Detail></Error> >>
body with C<Content-Type: application/xml; charset=utf-8>, and a C<TrackingId>
and an C<x-ms-correlation-request-id> header (UUIDs) on every response to a
request it could read.  Every request, accepted or not, is appended to
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

=item tag_send_path([$hub])

C</{hub}/messages/?api-version=2020-06> (no C<direct>: with a
C<ServiceBusNotification-Tags> header, a tag or template send).

=item installation_path($id[, $hub])

C</{hub}/installations/{id}?api-version=2020-06>, the id percent-encoded
where needed.

=item requests

The journal's request entries (one per HTTP request) as a list of hashrefs
(a count in scalar context).  Deliveries are left out.

=item deliveries

The journal's delivery entries (C<< kind => 'delivery' >>, one per device and
template a tag send reached), see L</JOURNAL>.

=item entries

Every journal line, requests and deliveries, in order (a request comes
before its deliveries).

=item wait_requests($n, $timeout), wait_deliveries($n, $timeout)

Polls the journal until it holds at least C<$n> requests (deliveries) or
C<$timeout> seconds (default 10) passed; returns them.

=item installations

Every stored installation of every hub, each as GET answers it plus a
C<hub> key (a count in scalar context).

=item installation([$hub,] $id)

One installation as GET answers it, or undef.

=item add_installation(\%installation[, $hub])

Stores an installation directly (validated as a PUT body; croaks with the
reason otherwise).  For tests that need devices in the hub without going
through the REST API.

=item clear_installations

Forgets every installation.

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
unknown hub or other path 404; method other than POST 405.  Paths
C</{hub}/installations/{id}> are checked as L</INSTALLATIONS> says.

=item 3.

Query: C<api-version> one of 2015-01 2015-04 2015-08 2016-07 2017-04 2020-06
(else 400); the C<direct> key present makes a direct send (the rest of this
list); without it the request must carry C<ServiceBusNotification-Tags> (a
tag send, L</TAG SENDS>), else 400 I<stand-in refuses broadcast sends:
direct missing and no ServiceBusNotification-Tags header>.  A direct send
that also carries C<ServiceBusNotification-Tags> is unchanged: the header is
ignored (as before tag sends were modelled).

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

    {"rules":[{"prefix":"abcd","status":503,"times":2,"retry_after":1,"delay_ms":0},
              {"installation":"flaky-","method":"PUT","status":429,"retry_after":2,"times":1},
              {"tags":"user:42","status":503},
              {"path":"/acs-push/installations/slow-","status":"hang"}]}

Every rule needs at least one selector; all the selectors it has must match:
C<prefix> (device-handle prefix of a direct send, case-insensitive),
C<installation> (installation-id prefix of a PUT/GET/PATCH/DELETE of
C</{hub}/installations/{id}>, case-insensitive), C<tags> (prefix of the
C<ServiceBusNotification-Tags> expression of a tag send, exact case),
C<path> (prefix of the request path, without the query, exact case, any
request that got this far).  More conditions: C<method>, C<format>, C<hub>.
C<status> (an HTTP status, C<"hang"> or C<"reset">; default 503): for a
direct send 201 is a delayed success; for an installation request or a tag
send any 2xx means "answer normally (store, delete, fan out) after
C<delay_ms>".  C<times> (the first N matching requests get C<status>, later
ones are answered normally; absent or 0: always), C<per_handle> (count per
exact handle, installation id, expression or path instead of per rule),
C<retry_after>, C<delay_ms> (wait before answering), C<detail>,
C<empty_body>.  An injected failure of an installation request changes
nothing (a 503 or hung PUT stores nothing); an injected failure of a tag
send reaches nobody (no deliveries).  Rewriting the file restarts the
counts.  An invalid file makes every matching-time request a 500 naming the
error.  The built-in handle prefixes (C<0503> ...) apply to direct sends
only.

=head1 SUCCESS

C<201>, empty body, C<Content-Length: 0>,
C<Location: https://{namespace}.servicebus.windows.net/{hub}/messages/{id}?api-version=2020-06>,
C<TrackingId> and C<x-ms-correlation-request-id> (UUIDs), C<Date>.

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
C<tracking_id>, C<correlation_id>, C<notification_id> and C<location> (201), C<kind>
(C<request>), C<op> (C<direct-send>, C<tag-send>, C<installation-put>,
C<installation-get>, C<installation-patch>, C<installation-delete>), and
for tag sends C<tags> (the expression as sent), C<tag_count>,
C<matched_installations> and C<deliveries> (how many delivery lines follow),
for installation requests C<installation_id> (decoded) and, for DELETE,
C<existed>.  A configured key
text never reaches the journal: if a client sent one it is replaced by
C<< <redacted-key> >> and the entry gets C<key_leaked: true>.

A tag send answered 201 is followed, in the same locked write, by one
I<delivery> line per device and template reached: C<kind> (C<delivery>),
C<time>, C<conn>, C<req>, C<pid>, C<tracking_id> and C<notification_id> (the
request's), C<hub>, C<installation_id>, C<user_id>, C<platform>
(installation's), C<format> (the send's: C<apple> ... or C<template>),
C<template> (name, or null for a native send), C<push_channel> (a string, or
the browser object), C<payload> (text as delivered: the request body for a
native send, the expanded template for a template send), C<json> (the
payload decoded, null for XML), C<headers> (lowercased, as delivered: the
request's C<apns-*> for apns, C<X-WNS-*> for wns, the template's headers
expanded, C<content-type>, and C<auth>/C<p256dh> from a browser
installation's pushChannel), C<expiry> (an apns template's, expanded) and
C<dropped> (why NH would not deliver it: an expanded payload over the
platform limit; the send is still 201).

The server's own log (handshake failures, errors) is F<$dir/fake-nh.log>.

=head1 INSTALLATIONS

C</{hub}/installations/{id}?api-version=...> (the REST
reference pages "Create or overwrite an installation", "Read an
installation", "Update an installation", "Delete an installation").  In
this order, the first failure is the answer:

=over

=item 1.

Host and SNI as for sends.  Unknown hub 404.  Method GET, PUT, PATCH or
DELETE, else 405 (C<Allow: GET, PUT, PATCH, DELETE>).  The id (percent-decoded)
must be 1-256 printable ASCII characters without C</ \ ? # % { } ">, else 400.

=item 2.

C<api-version> as for sends (2015-01 ... 2020-06), else 400.

=item 3.

SAS as for sends, with the audience C<https://{namespace}/{hub}/installations/{id}>
(a token for the namespace, the hub, C<.../installations> or the
installation itself fits; one for C<.../messages> or another installation
gets 401 C<InvalidAudience>).  The rule needs the I<Listen> right (Manage
includes it): without it 403 with an empty body on 2020-06, 401 on older
versions.

=item 4.

C<x-ms-version> present and one of the known API versions, else 400.

=item 5.

PUT: C<Content-Type: application/json> (charset optional, utf-8 only) else
415; PATCH: C<application/json-patch+json> or C<application/json>, else 415.
Body over 65536 bytes 413, empty 400, not JSON 400.

=item 6.

PUT body (400 on the first problem, with the reason): a JSON object whose
property names are matched case-insensitively (so C<userID> of the
reference and C<userId> of the SDKs are one property; the same name twice
400) against C<installationId>, C<userId>, C<platform>, C<pushChannel>,
C<tags>, C<templates>, C<pushVariables> and the read-only C<expirationTime>,
C<lastActiveOn>, C<lastUpdate>, C<pushChannelExpired>, C<expiredPushChannel>
(accepted when of the right type - string, or boolean for the last two - and
ignored); any other property 400, C<secondaryTiles> 400 (not modelled).
C<installationId> a string equal to the id in the URL; C<platform> one of
C<apns wns gcm fcmv1 adm baidu browser xiaomi>, any case, stored lower case;
C<pushChannel> a non-empty string without white space (hex for apns, an
https URL for wns), for browser an object C<{endpoint (https URL), p256dh,
auth}> of non-empty strings; C<tags> an array of 1-120 characters of
C<[A-Za-z0-9_@#.:-]>, at most 60 (duplicates dropped); C<userId> 1-256
characters of C<[A-Za-z0-9-_@#.:=]>; C<pushVariables> an object of strings;
C<templates> an object C<{NAME: {body, headers, expiry, tags}}> where NAME
is a valid tag, C<body> a non-empty string - a JSON object for every
platform but wns, XML (starting with C<< < >>) for wns unless its
C<X-WNS-Type> is C<wns/raw> -, C<headers> (wns only) an object of strings
that must hold C<X-WNS-Type> (wns/toast, wns/tile, wns/badge, wns/raw),
C<expiry> (apns only) a string, C<tags> as above; every template
expression must parse (L</Template expressions>).

=item 7.

Failure injection (L</RULES>, selectors C<installation> and C<path>).

=back

Answers: PUT 200, empty body, C<Content-Location:
https://{namespace}/{hub}/installations/{id}> (created or overwritten
alike: PUT replaces the whole installation).  GET 200 with the installation
as JSON (C<Content-Type: application/json; charset=utf-8>,
C<Content-Location>): the stored properties plus C<pushChannelExpired: false>,
C<expirationTime: "9999-12-31T23:59:59.9999999Z"> (never; NH sets it per
hub) and C<lastUpdate> (time of the last PUT or PATCH); 404 when there is
none.  PATCH 200, empty body, C<Content-Location>; 404 when there is none.
DELETE 204, empty body, also when the installation does not exist (the
reference says so).  Errors are NH's XML C<< <Error><Code>... >> bodies.

PATCH body: a JSON Patch (RFC 6902) array, applied atomically (one bad
operation changes nothing, 400 naming it).  C<op> C<add>, C<remove> or
C<replace> (C<move>, C<copy>, C<test> 400); C<path> (C<~1>, C<~0> decoded;
property names case-insensitive) one of:

    /pushChannel                 add, replace (validated as in PUT); remove 400
    /userId                      add; remove, replace (must exist)
    /tags                        add a tag (string) or tags (array), merged;
                                 replace (must exist) sets; remove (must exist) drops all
    /tags/-                      add one tag (string)
    /tags/TAG                    remove (the tag with that value, must exist); replace
    /templates/NAME              add (sets), replace, remove (must exist)
    /templates/NAME/body         add, replace; remove 400
    /templates/NAME/headers      add (replaces the headers object), replace, remove
    /templates/NAME/expiry       add, replace, remove
    /templates/NAME/tags[/-|/TAG]  as for /tags

Every other path (C</platform>, C</installationId>, C</expirationTime>,
C</pushVariables>, C</secondaryTiles/...>) 400.  The result is validated as
a PUT body would be (61 tags 400).  Removing the last tag (template) removes
C<tags> (C<templates>).

Installations live in F<$dir/installations.json>, read and rewritten under
flock by every connection process, so they outlive connections and are
shared by them (and by the test process's C<installation>, C<installations>,
C<add_installation>, C<clear_installations>).  They live until deleted: the
stand-in neither expires them nor drops them for an invalid handle.

B<Consistency>: NH processes installations asynchronously; a GET (or a tag
send) right after a PUT may briefly miss it (issue 345 of
azure-notificationhubs-dotnet: 404 right after a 200 upsert).  The
stand-in is consistent at once; a client must not rely on that.

=head1 TAG SENDS

C<POST /{hub}/messages/?api-version=...> without C<direct>, with
C<ServiceBusNotification-Tags: EXPRESSION>.  Checked as a direct send
(steps 4-6 of L</VALIDATION>: Send right, C<x-ms-version: 2020-06>, format,
Content-Type, apns headers, body and payload limits), except: no
C<ServiceBusNotification-DeviceHandle> (400 if present), no C<Auth>/C<P256DH>
for browser (they come from each installation's pushChannel), the header
once (400), and C<ServiceBusNotification-Format: template> is allowed
(C<Content-Type: application/json>, body a JSON object whose values are all
strings, property names unique regardless of case; else 400).

Expression grammar (400 with the reason when it does not parse):

    expr  := and ( '||' and )*
    and   := unary ( '&&' unary )*
    unary := '!' unary | '(' expr ')' | TAG
    TAG   := 1-120 of [A-Za-z0-9_@#.:-]
           | '$InstallationId:{' ID '}' | '$UserId:{' USERID '}'

White space between tokens is ignored.  Limits: at most 20 tags when the
expression has no C<&&> and no C<!>, else at most 6 (counting every tag
occurrence); over that 400.

Who is reached (an expression that reaches nobody is still 201): an
installation's tag set is its C<tags>, C<$InstallationId:{id}> and, if it has
a userId, C<$UserId:{userId}> (tags compare exactly, case-sensitive).  A
native send (C<apple>, C<fcmv1>, C<gcm>, C<windows>, C<browser>, C<adm>,
C<baidu>, C<xiaomi>) reaches the installations of that platform (apns, fcmv1,
gcm, wns, browser, adm, baidu, xiaomi) whose tag set satisfies the
expression, with the request body unchanged.  A template send reaches, in
every installation of any platform, each template whose tag set - the
installation's set plus the template's name plus the template's own
C<tags> - satisfies the expression, with the template expanded; installations
without templates are not reached.

=head2 Template expressions

As the "Templates" page's "template expression language" documents:
C<$(prop)> (the property's value; property names are not case-sensitive; a
missing property is the empty string), C<$(prop, n)> (clipped at n
characters), C<.(prop, n)> (clipped so that value plus C<...> is at most n
characters), C<%(prop)> (percent-encoded, RFC 3986 unreserved characters
kept), C<#(prop)> (as C<$( )>, but in a JSON template a value that is exactly
C<#(prop)> becomes a JSON number when the result looks like one), C<'text'>
and C<"text"> literals, and C<+> concatenation, which must be wrapped in
C<{ }>: C<{'Hi, ' + $(name)}>.  An expression is a whole value: a JSON
string value (not a key), an XML text node (white space around it kept) or
attribute value, a header value, the expiry; a value that holds an
expression inside other text (C<"Hi $(name)">) is refused when the template
is stored (400), as is an expression in a JSON key or an XML tag outside an
attribute value, a C<{ }> that does not parse, C<.( )> without a length,
C<%( )>/C<#( )> with one.  A value without expressions is kept as is.
Expanded JSON payloads are re-serialized (keys sorted); expanded XML text is
escaped.  An expanded payload over the platform's limit (apns 4096 ...)
is journaled as a delivery with C<dropped> set (NH reports such failures
asynchronously, not in the send's answer).

=head1 CHOICES

Where the reference is silent or ambiguous, the stand-in chose the strict,
documented-looking behaviour (sources: the REST reference pages named
above; the Azure docs pages "Registration management", "Routing and tag
expressions", "Templates"; the JS SDK C<@azure/notification-hubs> sources;
GitHub issues of the NH SDKs and docs):

=over

=item *

PATCH answers B<200>: the REST reference's table says 204, but the JS SDK's
C<updateInstallation> accepts only 200 (C<sendRequest(..., 200)>).  PATCH accepts C<application/json> besides the
documented C<application/json-patch+json> because that SDK sends it.

=item *

C<remove /tags/TAG> names the tag by value (the reference's own example
C</tags/myTag>), not by array index.  C<add /tags/TAG> is refused (use
C<add /tags>).  C<replace>/C<remove> of something absent is 400 (RFC 6902:
the target must exist; "replace is remove+add").

=item *

The special tags carry braces: C<$InstallationId:{id}> (docs example
C<$InstallationId:{joe93developer}>; docs issue 19473 confirms the braces;
Microsoft's samples build C<"$InstallationId:{" + id + "}">), exact case;
C<$UserId:{userId}> is matched too (a Microsoft answer on Q&A: target "using
either installationId or userId ... the tag format is similar for userId").
Other spellings (C<$InstallationId:id>, C<$installationid:{id}>) are not
valid tags and get 400.

=item *

A template's tag set is the installation's tags and special tags, plus the
template's name, plus its own tags (a Microsoft SDK maintainer, issue 213 of
azure-notificationhubs-dotnet: select a template with
C<myTemplateName && $InstallationId:...>; Microsoft's samples send templates
to C<$InstallationId:{id}>, which only works if the installation's tags
apply).  So template names must be valid tags.

=item *

Property names of a PUT body are case-insensitive (the reference writes
C<userID>, the SDKs C<userId>; NH deserializes with Newtonsoft), but unknown
properties are refused rather than ignored.  Read-only properties are
accepted and ignored ("Ignored when updating"); GET answers
C<pushChannelExpired> (the SDKs' name) rather than the reference's
C<expiredPushChannel>.

=item *

Template C<headers> only for wns and C<expiry> only for apns, as the
reference's table says ("Can be present only if platform is WNS or MPNS" /
"only if platform is apns"); wns templates need C<X-WNS-Type> (the
reference's note).  Request headers of a template send (C<apns-push-type>
...) are passed to the apns deliveries (the "iOS 13 updates" page sets
C<apns-push-type> on template sends).

=item *

Platforms: C<apns wns gcm fcmv1 adm baidu browser xiaomi> (the JS SDK's
installation kinds plus fcmv1); C<mpns> (retired) and C<fcm> (not an NH
platform name; the .NET SDK serializes FCM legacy as C<gcm>) are 400.
Baidu is accepted although an older docs note says installations do not
support it (the current SDKs model Baidu installations).

=item *

No documented limits for ids: the stand-in takes installation ids of 1-256
printable ASCII characters without C</ \ ? # % { } "> and userIds of 1-256
characters; the 60-tag limit applies to an installation's tags and to each
template's tags separately; the tag-count limit counts every tag occurrence
and any C<!> makes an expression "not only ORs".

=item *

An installation request needs C<x-ms-version> (any known version; the
reference lists the header) and, lacking Listen, gets what a send lacking
Send gets (403 empty on 2020-06, 401 before).  The reference's 403 "quota"
answers and NH's asynchronous failures are only reachable through
L</RULES>.

=item *

An expression that matches nothing is 201 (NH accepts and queues the
notification; its outcome state is then C<NoTargetFound>).  A send without
C<direct> and without tags (a broadcast) stays refused.  A tag send with a
DeviceHandle header is refused.

=item *

Template expressions must be whole values (the Templates page: "when using
concatenation, the entire expression must be surrounded with {}"); text
like C<"Hi $(name)"> or the reference's example C<$myTextProp1> (no
parentheses) is not an expression: the first is refused, the second kept as
text.

=back

=head1 NOT MODELLED

Batch sends, registrations, secondary tiles, scheduled and test sends,
telemetry, the installation expiry set per hub, NH dropping installations
whose handle the platform reports invalid, asynchronous installation
processing; the real service's exact Detail texts (only their leading codes,
like C<ExpiredToken:>, follow NH).

=cut
