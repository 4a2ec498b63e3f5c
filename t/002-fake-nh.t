#!/usr/bin/perl
# Tests of the Notification Hubs stand-in t/lib/AcsTest/FakeNH.pm (no nginx):
# it accepts a correct direct send and rejects each incorrect one as NH does.
#   prove -I t/lib t/002-fake-nh.t

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/lib";
use Digest::SHA qw(hmac_sha256);
use IO::Select;
use IO::Socket::SSL;
use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX ();
use Time::HiRes ();

use AcsTest::FakeNH;

my $NS    = 'acs-test-ns';
my $HOST  = "$NS.servicebus.windows.net";
my $HUB   = 'acs-push';
my $KNAME = 'DefaultFullSharedAccessSignature';
my $KEY   = 'dGVzdC1rZXktZm9yLXRoZS1mYWtlLW5oLW5vdC1yZWFsIQ==';
my $LKEY  = 'bGlzdGVuLW9ubHkta2V5LWZvci10ZXN0cw==';
my $SKEY  = 'c2VuZC1vbmx5LWtleS1mb3ItdGVzdHM=';
my $TOKEN = 'ab' x 32;    # an APNs-like hex token with no injection prefix
my $T0    = Time::HiRes::time();

# ---------------------------------------------------------------- SAS vector
subtest 'SAS test vector (PROTOCOLS.md 3.2)' => sub {
    my $k  = 'c2FtcGxlLXNoYXJlZC1hY2Nlc3Mta2V5LW5vdC1yZWFsPQ==';
    my $sr = 'https%3A%2F%2Fmynamespace.servicebus.windows.net%2Fmyhub';
    is(AcsTest::FakeNH::sas_signature($k, $sr, 1700000000),
       'NF2AU4UscCmT5z8RBPspBYudBA3qBpw4oR/GdrqfL7c=', 'sas_signature');
    is(AcsTest::FakeNH::sas_token($KNAME, $k, 'https://MyNamespace.servicebus.windows.net/MyHub', 1700000000),
       'SharedAccessSignature sr=https%3A%2F%2Fmynamespace.servicebus.windows.net%2Fmyhub'
       . '&sig=NF2AU4UscCmT5z8RBPspBYudBA3qBpw4oR%2FGdrqfL7c%3D&se=1700000000'
       . '&skn=DefaultFullSharedAccessSignature', 'sas_token');
    is(encode_base64(hmac_sha256("$sr\n1700000000", decode_base64($k)), ''),
       'm8V/KPCBNOTOgcCXN8wvckLn4XQRMwpWEVBE1jdAmz4=', 'wrong variant: decoded key');
    is(AcsTest::FakeNH::sas_signature($k, 'https://mynamespace.servicebus.windows.net/myhub', 1700000000),
       'njqCGqn1l7w1n//e9V6xTXIs1qbV4qmsgmCehibo5iY=', 'wrong variant: unencoded sr');
    my $cs = AcsTest::FakeNH::parse_connection_string(
        " Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=n;;SharedAccessKey=$k ");
    is($cs->{SharedAccessKey}, $k, 'connection string: key keeps its = padding');
};

# ---------------------------------------------------------------- start
my $dir = tempdir('fake-nh-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $nh = AcsTest::FakeNH->start(
    dir       => $dir,
    namespace => $NS,
    hubs      => [ $HUB, 'acs-voip' ],
    key_name  => $KNAME,
    key       => $KEY,
    rights    => 'manage',
    keys      => { ListenOnly => [ $LKEY, 'listen' ], SendOnly => $SKEY },
    hang_seconds => 5,
);
ok($nh->port, 'started on port ' . $nh->port);
ok(-s $nh->ca && -s $nh->other_ca && -s "$dir/server.pem" && -s "$dir/server.key", 'CA files');
is($nh->connection_string,
   "Endpoint=sb://$HOST/;SharedAccessKeyName=$KNAME;SharedAccessKey=$KEY", 'connection string');
is(AcsTest::FakeNH::setup_ca($dir)->{ca}, $nh->ca, 'setup_ca is idempotent');

# ---------------------------------------------------------------- client
sub nh_connect {
    my (%o) = @_;
    return IO::Socket::SSL->new(
        PeerAddr           => '127.0.0.1',
        PeerPort           => $nh->port,
        SSL_ca_file        => $o{ca} // $nh->ca,
        SSL_hostname       => $o{sni} // $HOST,
        SSL_verifycn_name  => $o{sni} // $HOST,
        SSL_verifycn_scheme => 'http',
        SSL_verify_mode    => SSL_VERIFY_PEER,
        SSL_alpn_protocols => ['http/1.1'],
        Timeout            => 5,
    );
}

# read more into $$buf within $timeout s: bytes read, 0 at EOF, undef on timeout
sub read_some {
    my ($s, $buf, $timeout) = @_;
    $s->blocking(0);
    my $end = Time::HiRes::time() + $timeout;
    while (1) {
        my $n = sysread($s, $$buf, 65536, length $$buf);
        return $n if defined $n;
        return 0 unless $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
        my $left = $end - Time::HiRes::time();
        return undef if $left <= 0;
        IO::Select->new($s)->can_read($left);
    }
}

sub write_all {
    my ($s, $data) = @_;
    $s->blocking(0);
    my $off = 0;
    my $end = Time::HiRes::time() + 10;
    while ($off < length $data) {
        my $n = syswrite($s, $data, length($data) - $off, $off);
        if (defined $n) { $off += $n; next }
        return 0 unless $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
        return 0 if Time::HiRes::time() > $end;
        IO::Select->new($s)->can_write(0.5);
        IO::Select->new($s)->can_read(0.01);
    }
    return 1;
}

# send one request on $s; returns {status, headers, body} or {error}
sub nh_request {
    my ($s, %o) = @_;
    my $body = $o{body} // '{"aps":{}}';
    my %h = (
        'Host'                                => $HOST,
        'Authorization'                       => $nh->token(hub => $o{hub}),
        'Content-Type'                        => 'application/json;charset=utf-8',
        'ServiceBusNotification-Format'       => 'apple',
        'ServiceBusNotification-DeviceHandle' => $TOKEN,
        'x-ms-version'                        => '2020-06',
        'apns-push-type'                      => 'voip',
        'apns-priority'                       => '10',
    );
    my %ov = %{ $o{headers} // {} };
    for my $k (keys %ov) {
        my ($real) = grep { lc $_ eq lc $k } keys %h;
        delete $h{$real} if defined $real;
        $h{$k} = $ov{$k} if defined $ov{$k};
    }
    my $req = ($o{method} // 'POST') . ' ' . ($o{path} // $nh->send_path($o{hub})) . " HTTP/1.1\r\n";
    $req .= "$_: $h{$_}\r\n" for sort keys %h;
    if ($o{chunked}) {
        $req .= "Transfer-Encoding: chunked\r\n\r\n";
        for my $piece (unpack '(a7)*', $body) {
            $req .= sprintf("%x\r\n%s\r\n", length $piece, $piece);
        }
        $req .= "0\r\n\r\n";
    } else {
        $req .= 'Content-Length: ' . length($body) . "\r\n\r\n" . $body;
    }
    write_all($s, $req) or return { error => "write: $!" };
    my $buf = '';
    my $timeout = $o{timeout} // 10;
    while ($buf !~ /\r\n\r\n/) {
        my $n = read_some($s, \$buf, $timeout);
        return { error => defined $n ? ($n ? 'short' : 'eof') : 'timeout', raw => $buf } unless $n;
    }
    my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
    my ($status_line, @lines) = split /\r\n/, $head;
    my ($status) = $status_line =~ m{^HTTP/1\.1 (\d{3}) };
    my %rh;
    for (@lines) { my ($n, $v) = /^([^:]+):\s*(.*)$/; $rh{ lc $n } = $v }
    my $len = $rh{'content-length'} // 0;
    while (length $rest < $len) {
        my $n = read_some($s, \$rest, $timeout) or return { error => 'body', status => $status };
    }
    return { status => $status, headers => \%rh, body => substr($rest, 0, $len) };
}

# a request on a fresh connection
sub push_req {
    my (%o) = @_;
    my $s = nh_connect(%o) or return { error => "connect: $SSL_ERROR" };
    my $r = nh_request($s, %o);
    close $s;
    return $r;
}

sub last_entry { ($nh->requests)[-1] }

# expect status $st (and an NH XML error for errors unless $empty)
sub expect_status {
    my ($name, $st, %o) = @_;
    my $r = push_req(%o);
    subtest "$name -> $st" => sub {
        is($r->{status}, $st, 'status') or diag explain $r;
        like($r->{headers}{trackingid} // '', qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
             'TrackingId');
        if ($st != 201 && !$o{empty}) {
            is($r->{headers}{'content-type'}, 'application/xml; charset=utf-8', 'XML error');
            like($r->{body}, qr{^<Error><Code>$st</Code><Detail>.+</Detail></Error>$}s, 'NH error body');
            like($r->{body}, $o{detail}, 'detail') if $o{detail};
        }
        if ($o{empty}) {
            is($r->{body}, '', 'empty body');
            is($r->{headers}{'content-length'}, '0', 'Content-Length: 0');
        }
        is($r->{headers}{'retry-after'}, $o{retry_after}, 'Retry-After') if exists $o{retry_after};
        my $e = last_entry();
        is($e->{status}, $st, 'journaled status');
        like($e->{detail}, $o{why}, 'journaled reason') if $o{why};
        is($e->{tracking_id}, $r->{headers}{trackingid}, 'journaled tracking id');
    };
    return $r;
}

# ---------------------------------------------------------------- success
subtest 'correct apple request' => sub {
    $nh->clear;
    my $r = push_req();
    is($r->{status}, 201, 'status 201') or diag explain $r;
    is($r->{body}, '', 'empty body');
    is($r->{headers}{'content-length'}, '0', 'Content-Length 0');
    like($r->{headers}{location},
         qr{^https://$HOST/$HUB/messages/\d+\?api-version=2020-06$}, 'Location');
    ok($r->{headers}{trackingid}, 'TrackingId');
    ok($r->{headers}{date}, 'Date');
    my @e = $nh->wait_requests(1, 5);
    is(scalar @e, 1, 'one journal entry');
    my $e = $e[0];
    is($e->{status}, 201, 'journal status');
    is($e->{method}, 'POST', 'method');
    is($e->{path}, "/$HUB/messages/", 'path');
    is($e->{query}, 'api-version=2020-06&direct', 'query');
    is($e->{sni}, $HOST, 'sni');
    is($e->{alpn}, 'http/1.1', 'alpn');
    is($e->{handle}, $TOKEN, 'handle');
    is($e->{format}, 'apple', 'format');
    is($e->{hub}, $HUB, 'hub');
    is_deeply($e->{json}, { aps => {} }, 'json');
    is($e->{headers}{'apns-push-type'}, 'voip', 'headers lowercased');
    is($e->{sas}{skn}, $KNAME, 'sas skn');
    is($e->{tracking_id}, $r->{headers}{trackingid}, 'tracking id');
    like($r->{headers}{location}, qr{/$e->{notification_id}\?}, 'notification id');
    unlike(AcsTest::FakeNH::_slurp_journal($nh), qr/\Q$KEY\E/, 'the key is not in the journal');
};

sub AcsTest::FakeNH::_slurp_journal {
    open(my $f, '<', $_[0]->journal) or return '';
    local $/;
    return scalar <$f>;
}

my $fcm = '{"message":{"data":{"eventId":"107","videoCall":"false"},'
        . '"android":{"priority":"high","ttl":"60s"}}}';
my %FCM = (headers => { 'ServiceBusNotification-Format' => 'fcmv1',
                        'ServiceBusNotification-DeviceHandle' => 'fcm-token:APA91b-xyz',
                        'apns-push-type' => undef, 'apns-priority' => undef },
           body => $fcm);

expect_status('correct fcmv1', 201, %FCM);
expect_status('second hub', 201, hub => 'acs-voip');
expect_status('namespace-level sr', 201,
    headers => { Authorization => $nh->token(uri => "https://$HOST/") });
expect_status('chunked request body', 201, chunked => 1);
expect_status('Host with port', 201, headers => { Host => "$HOST:443" });
expect_status('send-only key', 201,
    headers => { Authorization => $nh->token(key_name => 'SendOnly') });
expect_status('gcm (legacy) accepted', 201,
    headers => { 'ServiceBusNotification-Format' => 'gcm', 'ServiceBusNotification-DeviceHandle' => 'gcm-x',
                 'apns-push-type' => undef, 'apns-priority' => undef },
    body => '{"data":{"a":"b"}}');
ok(last_entry()->{legacy}, 'gcm journaled as legacy');
expect_status('windows toast', 201,
    headers => { 'ServiceBusNotification-Format' => 'windows', 'X-WNS-Type' => 'wns/toast',
                 'ServiceBusNotification-DeviceHandle' => 'https://wns.example/ch',
                 'Content-Type' => 'application/xml' },
    body => '<toast><visual/></toast>');

subtest 'keep-alive: two requests on one connection' => sub {
    $nh->clear;
    my $s = nh_connect() or return fail("connect: $SSL_ERROR");
    my $r1 = nh_request($s);
    my $r2 = nh_request($s, %FCM);
    close $s;
    is($r1->{status}, 201, 'first');
    is($r2->{status}, 201, 'second');
    my @e = $nh->requests;
    is(scalar @e, 2, 'two entries');
    is($e[0]{conn}, $e[1]{conn}, 'same connection');
    is_deeply([ map { $_->{req} } @e ], [ 1, 2 ], 'request indexes');
};

# ---------------------------------------------------------------- validation
my $sr_enc = AcsTest::FakeNH::pct_encode("https://$HOST/$HUB");
my $se     = time + 3600;
sub tok { my ($sr, $sig, $se, $skn) = @_;
          "SharedAccessSignature sr=$sr&sig=" . AcsTest::FakeNH::pct_encode($sig) . "&se=$se&skn=$skn" }

expect_status('wrong Host', 404, why => qr/is not this namespace/, headers => { Host => 'other-ns.servicebus.windows.net' });
expect_status('SNI differs from Host', 400, why => qr/TLS SNI 'localhost'/, sni => 'localhost', detail => qr/SNI/);
expect_status('unknown hub', 404, why => qr/hub 'nohub' does not exist/, path => '/nohub/messages/?api-version=2020-06&direct');
expect_status('other path', 404, why => qr/no such resource/, path => "/$HUB/installations/x?api-version=2020-06");
expect_status('GET', 405, why => qr/method GET not allowed/, method => 'GET');
expect_status('missing direct (broadcast)', 400,
    path => "/$HUB/messages/?api-version=2020-06",
    detail => qr/stand-in refuses broadcast sends: direct missing/);
expect_status('wrong api-version', 400, why => qr/api-version '2021-01' is not supported/, path => "/$HUB/messages/?api-version=2021-01&direct");
expect_status('no api-version', 400, why => qr/api-version query parameter is missing/, path => "/$HUB/messages/?direct");
expect_status('missing Authorization', 401, why => qr/^MissingToken/, headers => { Authorization => undef });
expect_status('malformed Authorization', 401, why => qr/^MalformedToken/, headers => { Authorization => 'Bearer abc' });
expect_status('bad sig', 401, why => qr/^InvalidSignature/, detail => qr/InvalidSignature/,
    headers => { Authorization => tok($sr_enc, 'AAAA' . substr(AcsTest::FakeNH::sas_signature($KEY, $sr_enc, $se), 4), $se, $KNAME) });
expect_status('sig over unencoded sr', 401, why => qr/^InvalidSignature/,
    headers => { Authorization => tok($sr_enc, AcsTest::FakeNH::sas_signature($KEY, "https://$HOST/$HUB", $se), $se, $KNAME) });
is(last_entry()->{hint}, 'the signature was computed over the unencoded sr', 'hint: unencoded sr');
expect_status('key base64-decoded', 401, why => qr/^InvalidSignature/,
    headers => { Authorization => tok($sr_enc, encode_base64(hmac_sha256("$sr_enc\n$se", decode_base64($KEY)), ''), $se, $KNAME) });
is(last_entry()->{hint}, 'the signature was computed with the base64-decoded key', 'hint: decoded key');
expect_status('expired se', 401, why => qr/^ExpiredToken/, detail => qr/<Detail>ExpiredToken: /,
    headers => { Authorization => $nh->token(se => time - 10) });
expect_status('wrong skn', 401, why => qr/unknown SharedAccessKeyName 'NoSuchRule'/,
    headers => { Authorization => tok($sr_enc, AcsTest::FakeNH::sas_signature($KEY, $sr_enc, $se), $se, 'NoSuchRule') });
expect_status('wrong sr (other hub)', 401, why => qr/^InvalidAudience/, detail => qr/InvalidAudience/,
    headers => { Authorization => $nh->token(hub => 'acs-voip') });
expect_status('wrong sr (not on a segment boundary)', 401, why => qr/^InvalidAudience/,
    headers => { Authorization => $nh->token(uri => "https://$HOST/acs-pu") });
expect_status('listen-only rule', 403, why => qr/lacks the Send right/, empty => 1,
    headers => { Authorization => $nh->token(key_name => 'ListenOnly') });
expect_status('missing x-ms-version', 400, why => qr/x-ms-version/, headers => { 'x-ms-version' => undef });
expect_status('bad format', 400, why => qr/Format 'apns' is not a valid platform/, headers => { 'ServiceBusNotification-Format' => 'apns' });
expect_status('missing handle', 400, why => qr/DeviceHandle header missing or empty/, headers => { 'ServiceBusNotification-DeviceHandle' => undef });
expect_status('empty handle', 400, why => qr/DeviceHandle header missing or empty/, headers => { 'ServiceBusNotification-DeviceHandle' => '' });
expect_status('wrong Content-Type', 415, why => qr/Content-Type/, headers => { 'Content-Type' => 'text/plain' });
expect_status('bad apns-push-type', 400, why => qr/apns-push-type 'banner'/, headers => { 'apns-push-type' => 'banner' });
expect_status('background with priority 10', 400, why => qr/background requires apns-priority 5/, headers => { 'apns-push-type' => 'background' });
expect_status('bad apns-priority', 400, why => qr/apns-priority '7'/, headers => { 'apns-priority' => '7' });
expect_status('bad apns-expiration', 400, why => qr/apns-expiration/, headers => { 'apns-expiration' => 'soon' });
expect_status('apple body without aps', 400, why => qr/no "aps" object/, body => '{"data":{}}', detail => qr/aps/);
expect_status('apple body not JSON', 400, why => qr/not valid JSON/, body => '{"aps":');
expect_status('apple body > 4096', 400, why => qr/exceeds 4096 bytes/, detail => qr/exceeds 4096/,
    body => '{"aps":{},"p":"' . ('x' x 4100) . '"}');
expect_status('fcmv1 with token', 400, why => qr/message.token must not be set/, %FCM, body => '{"message":{"token":"t","data":{}}}',
    detail => qr/token/);
expect_status('fcmv1 with non-string data', 400, why => qr/message.data.eventId must be a string/, %FCM, body => '{"message":{"data":{"eventId":107}}}',
    detail => qr/string/);
expect_status('fcmv1 with numeric ttl', 400, why => qr/android.ttl/, %FCM, body => '{"message":{"android":{"ttl":60}}}');
expect_status('fcmv1 with bad priority', 400, why => qr/android.priority/, %FCM, body => '{"message":{"android":{"priority":"max"}}}');
expect_status('fcmv1 without message', 400, why => qr/no "message" object/, %FCM, body => '{"data":{}}');
expect_status('browser without Auth/P256DH', 400, why => qr/requires the Auth header/,
    headers => { 'ServiceBusNotification-Format' => 'browser',
                 'ServiceBusNotification-DeviceHandle' => 'https://push.example/x' });
expect_status('body > 64 KB', 413, why => qr/exceeds 65536 bytes/, body => '{"aps":{},"p":"' . ('x' x 70000) . '"}');

# ---------------------------------------------------------------- injection
my %INJ = (
    '0400' => [400], '0403' => [403, empty => 1], '0404' => [404], '0408' => [408],
    '0410' => [410], '0413' => [413], '0429' => [429, retry_after => 1],
    '0500' => [500], '0503' => [503],
);
for my $p (sort keys %INJ) {
    my ($st, @o) = @{ $INJ{$p} };
    expect_status("injected $p", $st, @o, why => qr/^injected by device handle prefix $p$/, headers => { 'ServiceBusNotification-DeviceHandle' => $p . 'ABCDEF' });
}
expect_status('injection does not hide auth errors', 401, why => qr/^ExpiredToken/,
    headers => { 'ServiceBusNotification-DeviceHandle' => '0503aa', Authorization => $nh->token(se => 1) });

subtest 'counted flakiness 05031 and 04291' => sub {
    my $h = '05031' . 'c' x 59;
    is(push_req(headers => { 'ServiceBusNotification-DeviceHandle' => $h })->{status}, 503, '05031: first 503');
    is(push_req(headers => { 'ServiceBusNotification-DeviceHandle' => $h })->{status}, 201, '05031: then 201');
    is(push_req(headers => { 'ServiceBusNotification-DeviceHandle' => $h })->{status}, 201, '05031: still 201');
    is(push_req(headers => { 'ServiceBusNotification-DeviceHandle' => '05031d' })->{status}, 503, '05031: per handle');
    my $r = push_req(headers => { 'ServiceBusNotification-DeviceHandle' => '04291e' });
    is($r->{status}, 429, '04291: first 429');
    is($r->{headers}{'retry-after'}, '2', 'Retry-After: 2');
    is(push_req(headers => { 'ServiceBusNotification-DeviceHandle' => '04291E' })->{status}, 201,
       '04291: then 201 (handle case-insensitive)');
};

subtest 'rules.json' => sub {
    $nh->set_rules([ { prefix => 'abcd', status => 502, times => 2, retry_after => 3 } ]);
    my @st = map { push_req(headers => { 'ServiceBusNotification-DeviceHandle' => "abcd$_" })->{status} } 1 .. 3;
    is_deeply(\@st, [ 502, 502, 201 ], 'two 502 then 201');
    $nh->set_rules();
};

subtest '0666: connection reset without an answer' => sub {
    my $r = push_req(headers => { 'ServiceBusNotification-DeviceHandle' => '0666aa' });
    ok(!$r->{status}, 'no status') or diag explain $r;
    ok($r->{error}, "client saw: $r->{error}");
    is(last_entry()->{status}, 0, 'journaled with status 0');
};

subtest '0777: no answer (2 s client timeout)' => sub {
    my $t = Time::HiRes::time();
    my $r = push_req(timeout => 2, headers => { 'ServiceBusNotification-DeviceHandle' => '0777aa' });
    is($r->{error}, 'timeout', 'timed out') or diag explain $r;
    cmp_ok(Time::HiRes::time() - $t, '<', 4, 'within the client timeout');
    is(last_entry()->{injected}, '0777', 'journaled');
};

# ---------------------------------------------------------------- TLS
subtest 'TLS: wrong CA, SNI, protocol' => sub {
    my $s = nh_connect(ca => $nh->other_ca);
    ok(!$s, 'a client trusting other-ca.pem refuses the server');
    like($SSL_ERROR, qr/certificate verify failed/i, 'verification failure');
    my $o = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $nh->port,
        SSL_ca_file => $nh->ca, SSL_hostname => $HOST, SSL_version => 'TLSv1_1', Timeout => 5);
    ok(!$o, 'TLS 1.1 refused');
    $s = nh_connect();
    is($s->alpn_selected, 'http/1.1', 'ALPN http/1.1');
    close $s;
};

# ---------------------------------------------------------------- concurrency
subtest '32 concurrent connections' => sub {
    $nh->clear;
    my $start = Time::HiRes::time() + 1;
    my @pids;
    for my $i (1 .. 32) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $ok = 0;
            if (my $s = nh_connect()) {
                my $w = $start - Time::HiRes::time();
                Time::HiRes::sleep($w) if $w > 0;
                my $a = nh_request($s, headers => { 'ServiceBusNotification-DeviceHandle' => sprintf('%064x', $i) });
                my $b = nh_request($s, %FCM);
                $ok = ($a->{status} // 0) == 201 && ($b->{status} // 0) == 201;
                close $s;
            }
            POSIX::_exit($ok ? 0 : 1);
        }
        push @pids, $pid;
    }
    my $fails = 0;
    for (@pids) { waitpid($_, 0); $fails++ if $? }
    is($fails, 0, 'all 32 clients got two 201s');
    my @e = $nh->wait_requests(64, 5);
    is(scalar @e, 64, '64 journal entries');
    my %conns = map { $_->{conn} => 1 } @e;
    is(scalar keys %conns, 32, '32 distinct connections');
};

# ---------------------------------------------------------------- stop
my $pid = $nh->pid;
$nh->stop;
ok(!kill(0, -$pid), 'process group gone after stop');
cmp_ok(Time::HiRes::time() - $T0, '<', 40, 'took less than 40 s');

done_testing;
