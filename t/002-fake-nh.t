#!/usr/bin/perl
# Tests of the Notification Hubs stand-in t/lib/AcsTest/FakeNH.pm (no nginx):
# it accepts a correct direct send, installation request (PUT, GET, PATCH,
# DELETE) and tag or template send, fans tag sends out to the matching
# installations in its journal, and rejects each incorrect request as NH does.
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
subtest 'SAS test vector (docs/dispatch.md, section 1)' => sub {
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
expect_status('other path', 404, why => qr/no such resource/, path => "/$HUB/registrations/x?api-version=2020-06");
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

# ---------------------------------------------------------------- installations
my $JS = JSON::PP->new->canonical;

# an installation request on a fresh connection; json => data is encoded
sub inst_req {
    my ($method, $id, %o) = @_;
    my $body = exists $o{json} ? $JS->encode($o{json}) : ($o{body} // '');
    my %hd = (
        'ServiceBusNotification-Format'       => undef,
        'ServiceBusNotification-DeviceHandle' => undef,
        'apns-push-type'                      => undef,
        'apns-priority'                       => undef,
        'Content-Type' => $method eq 'PATCH' ? 'application/json-patch+json'
                        : $method eq 'PUT'   ? 'application/json' : undef,
        %{ $o{headers} // {} },
    );
    return push_req(method => $method, path => $o{path} // $nh->installation_path($id, $o{hub}),
                    headers => \%hd, body => $body, hub => $o{hub});
}

# expect status $st for an installation request (NH XML error unless 2xx or empty)
sub expect_inst {
    my ($name, $st, $method, $id, %o) = @_;
    my $r = inst_req($method, $id, %o);
    subtest "$name -> $st" => sub {
        is($r->{status}, $st, 'status') or diag explain $r;
        ok($r->{headers}{trackingid}, 'TrackingId');
        if ($st >= 300 && !$o{empty}) {
            is($r->{headers}{'content-type'}, 'application/xml; charset=utf-8', 'XML error');
            like($r->{body}, qr{^<Error><Code>$st</Code><Detail>.+</Detail></Error>$}s, 'NH error body');
        }
        is($r->{body}, '', 'empty body') if $o{empty} || $st == 204 || ($st == 200 && $method ne 'GET');
        my $e = last_entry();
        is($e->{status}, $st, 'journaled status');
        like($e->{detail}, $o{why}, 'journaled reason') if $o{why};
        is($e->{op}, 'installation-' . lc $method, 'journaled op') if $method =~ /^(?:GET|PUT|PATCH|DELETE)$/;
    };
    return $r;
}

my $APNS1 = 'a1' x 32;
my %INST_A1 = (installationId => 'inst-a1', platform => 'apns', pushChannel => $APNS1,
               tags => [ 'sports', 'boston' ], userId => 'alice');

subtest 'PUT creates an installation, GET reads it back (200, JSON, Content-Location)' => sub {
    $nh->clear;
    $nh->clear_installations;
    my $r = inst_req('PUT', 'inst-a1', json => \%INST_A1);
    is($r->{status}, 200, 'PUT 200') or diag explain $r;
    is($r->{body}, '', 'no body');
    is($r->{headers}{'content-location'}, "https://$HOST/$HUB/installations/inst-a1", 'Content-Location');
    my $e = last_entry();
    is($e->{op}, 'installation-put', 'journal op');
    is($e->{installation_id}, 'inst-a1', 'journal installation id');
    is($e->{detail}, 'installation created', 'created');
    $r = inst_req('GET', 'inst-a1');
    is($r->{status}, 200, 'GET 200');
    is($r->{headers}{'content-type'}, 'application/json; charset=utf-8', 'JSON');
    my $j = JSON::PP->new->decode($r->{body});
    is($j->{$_}, $INST_A1{$_}, $_) for qw(installationId platform pushChannel userId);
    is_deeply($j->{tags}, [ 'sports', 'boston' ], 'tags');
    is($j->{expirationTime}, '9999-12-31T23:59:59.9999999Z', 'expirationTime: never');
    ok(defined $j->{pushChannelExpired} && !$j->{pushChannelExpired}, 'pushChannelExpired false');
    like($j->{lastUpdate}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/, 'lastUpdate');
    is_deeply($nh->installation('inst-a1'), $j, 'installation() = GET');
    is_deeply([ map { "$_->{hub}/$_->{installationId}" } $nh->installations ], [ "$HUB/inst-a1" ], 'installations()');
};

subtest 'PUT overwrites; keep-alive PUT then GET on one connection' => sub {
    my $s = nh_connect() or return fail("connect: $SSL_ERROR");
    my %h = ('ServiceBusNotification-Format' => undef, 'ServiceBusNotification-DeviceHandle' => undef,
             'apns-push-type' => undef, 'apns-priority' => undef);
    my $r1 = nh_request($s, method => 'PUT', path => $nh->installation_path('inst-a1'),
                        headers => { %h, 'Content-Type' => 'application/json' },
                        body => $JS->encode({ %INST_A1, tags => ['news'], userId => undef }));
    my $r2 = nh_request($s, method => 'GET', path => $nh->installation_path('inst-a1'), headers => \%h, body => '');
    close $s;
    is($r1->{status}, 200, 'PUT 200');
    is(last_entry()->{detail}, 'installation read', 'GET journaled');
    my $j = JSON::PP->new->decode($r2->{body} // '{}');
    is_deeply($j->{tags}, ['news'], 'tags replaced');
    ok(!exists $j->{userId}, 'userId gone (overwrite, not merge)');
};

expect_inst('PUT with platform in capitals, userID spelled as in the reference', 200, 'PUT', 'inst-caps',
    json => { installationId => 'inst-caps', platform => 'APNS', pushChannel => 'AB' x 32, userID => 'bob' });
is($nh->installation('inst-caps')->{platform}, 'apns', 'platform stored as apns');
is($nh->installation('inst-caps')->{userId}, 'bob', 'userID stored as userId');
expect_inst('PUT with read-only properties (ignored)', 200, 'PUT', 'inst-ro',
    json => { installationId => 'inst-ro', platform => 'fcmv1', pushChannel => 'fcm:tok-1',
              expirationTime => '2001-01-01T00:00:00Z', lastUpdate => 'x', lastActiveOn => 'y',
              pushChannelExpired => JSON::PP::true });
is($nh->installation('inst-ro')->{expirationTime}, '9999-12-31T23:59:59.9999999Z', 'expirationTime stays never');
expect_inst('PUT browser installation', 200, 'PUT', 'inst-b1',
    json => { installationId => 'inst-b1', platform => 'browser',
              pushChannel => { endpoint => 'https://push.example/e1', p256dh => 'P256', auth => 'AUTH' },
              tags => ['web'] });
expect_inst('PUT gcm (legacy) installation', 200, 'PUT', 'inst-g1',
    json => { installationId => 'inst-g1', platform => 'gcm', pushChannel => 'gcm-token' });
expect_inst('Listen-only rule may PUT', 200, 'PUT', 'inst-l1',
    json => { installationId => 'inst-l1', platform => 'adm', pushChannel => 'amzn1.adm-registration.x' },
    headers => { Authorization => $nh->token(key_name => 'ListenOnly') });
expect_inst('token scoped to the installation itself', 200, 'GET', 'inst-l1',
    headers => { Authorization => $nh->token(uri => "https://$HOST/$HUB/installations/inst-l1") });

# refusals
my %PUT_OK = (installationId => 'inst-x', platform => 'apns', pushChannel => 'cd' x 32);
my @PUT_BAD = (
    [ 'installationId differs from the URL', { %PUT_OK, installationId => 'other' }, qr/differs from the id in the URL/ ],
    [ 'no installationId', { %PUT_OK, installationId => undef }, qr/installationId is required/ ],
    [ 'numeric installationId', { %PUT_OK, installationId => 12 }, qr/installationId must be a string/ ],
    [ 'no platform', { %PUT_OK, platform => undef }, qr/platform is required/ ],
    [ 'platform mpns (retired)', { %PUT_OK, platform => 'mpns' }, qr/platform 'mpns' is not one of/ ],
    [ 'platform fcm (NH says gcm or fcmv1)', { %PUT_OK, platform => 'fcm' }, qr/platform 'fcm'/ ],
    [ 'no pushChannel', { %PUT_OK, pushChannel => undef }, qr/pushChannel is required/ ],
    [ 'apns pushChannel not hex', { %PUT_OK, pushChannel => 'not-hex' }, qr/not a valid APNs token/ ],
    [ 'wns pushChannel not https', { %PUT_OK, platform => 'wns', pushChannel => 'http://x' }, qr/must be an https URL/ ],
    [ 'browser pushChannel a string', { %PUT_OK, platform => 'browser', pushChannel => 'https://x' }, qr/must be an object/ ],
    [ 'browser pushChannel without auth', { %PUT_OK, platform => 'browser', pushChannel => { endpoint => 'https://x', p256dh => 'p' } }, qr/pushChannel.auth/ ],
    [ 'tags not an array', { %PUT_OK, tags => 'sports' }, qr/tags must be an array/ ],
    [ 'tag with a space', { %PUT_OK, tags => ['a b'] }, qr/tag 'a b' is not 1-120/ ],
    [ 'tag with $', { %PUT_OK, tags => ['$x'] }, qr/tag '\$x'/ ],
    [ 'tag of 121 characters', { %PUT_OK, tags => [ 'x' x 121 ] }, qr/is not 1-120/ ],
    [ '61 tags', { %PUT_OK, tags => [ map { "t$_" } 1 .. 61 ] }, qr/61 tags, at most 60/ ],
    [ 'userId with a space', { %PUT_OK, userId => 'a b' }, qr/userId 'a b'/ ],
    [ 'unknown property', { %PUT_OK, pushchanell => 'x' }, qr/unknown installation property 'pushchanell'/ ],
    [ 'secondaryTiles', { %PUT_OK, secondaryTiles => {} }, qr/secondaryTiles are not modelled/ ],
    [ 'read-only lastUpdate not a string', { %PUT_OK, lastUpdate => 5 }, qr/lastUpdate \(read-only\) must be a string/ ],
    [ 'templates not an object', { %PUT_OK, templates => [] }, qr/templates must be a JSON object/ ],
    [ 'template without body', { %PUT_OK, templates => { t => { tags => ['a'] } } }, qr/templates.t.body is required/ ],
    [ 'template body not JSON for apns', { %PUT_OK, templates => { t => { body => '<toast/>' } } }, qr/must be a JSON object/ ],
    [ 'template headers on apns', { %PUT_OK, templates => { t => { body => '{"aps":{}}', headers => { 'apns-priority' => '5' } } } }, qr/only wns templates have headers/ ],
    [ 'template expiry on fcmv1', { %PUT_OK, platform => 'fcmv1', pushChannel => 'f', templates => { t => { body => '{"message":{}}', expiry => '$(e)' } } }, qr/only apns templates have an expiry/ ],
    [ 'wns template without X-WNS-Type', { %PUT_OK, platform => 'wns', pushChannel => 'https://wns/x', templates => { t => { body => '<toast/>' } } }, qr/needs an X-WNS-Type header/ ],
    [ 'template expression inside text', { %PUT_OK, templates => { t => { body => '{"aps":{"alert":"Hi $(name)"}}' } } }, qr/must be the whole value/ ],
    [ 'template expression in a JSON key', { %PUT_OK, templates => { t => { body => '{"$(k)":"v","aps":{}}' } } }, qr/not in keys/ ],
    [ 'template concatenation without +', { %PUT_OK, templates => { t => { body => q({"aps":{"alert":"{'a' $(b)}"}}) } } }, qr/expected \+/ ],
    [ 'template .( ) without length', { %PUT_OK, templates => { t => { body => '{"aps":{"alert":".(title)"}}' } } }, qr/needs a length/ ],
    [ 'template %( ) with length', { %PUT_OK, templates => { t => { body => '{"aps":{"alert":"%(q, 3)"}}' } } }, qr/only \$\( \) and \.\( \) take a length/ ],
    [ 'XML template expression in a tag', { %PUT_OK, platform => 'wns', pushChannel => 'https://wns/x',
        templates => { t => { body => '<tile><visual><binding $(property)/></visual></tile>', headers => { 'X-WNS-Type' => 'wns/tile' } } } },
      qr/only allowed in attribute values and text/ ],
    [ 'template name with a space', { %PUT_OK, templates => { 'my t' => { body => '{"aps":{}}' } } }, qr/template name 'my t'/ ],
);
for my $b (@PUT_BAD) {
    my ($name, $json, $why) = @$b;
    my %j = %$json;
    delete @j{ grep { !defined $j{$_} } keys %j };
    expect_inst("PUT refused: $name", 400, 'PUT', 'inst-x', json => \%j, why => $why);
}
ok(!$nh->installation('inst-x'), 'no refused PUT stored anything');
expect_inst('PUT body not JSON', 400, 'PUT', 'inst-x', body => '{"installationId":', why => qr/not valid JSON/);
expect_inst('PUT body a JSON array', 400, 'PUT', 'inst-x', body => '[]', why => qr/must be a JSON object/);
expect_inst('PUT empty body', 400, 'PUT', 'inst-x', body => '', why => qr/body is empty/);
expect_inst('PUT body over 64 KB', 413, 'PUT', 'inst-x', body => '{"x":"' . ('y' x 70000) . '"}', why => qr/exceeds 65536/);
expect_inst('PUT with Content-Type text/plain', 415, 'PUT', 'inst-x', json => \%PUT_OK,
    headers => { 'Content-Type' => 'text/plain' }, why => qr/must be application\/json/);
expect_inst('PUT without Content-Type', 415, 'PUT', 'inst-x', json => \%PUT_OK,
    headers => { 'Content-Type' => undef }, why => qr/got none/);
expect_inst('PUT with charset latin1', 415, 'PUT', 'inst-x', json => \%PUT_OK,
    headers => { 'Content-Type' => 'application/json; charset=iso-8859-1' });
expect_inst('no api-version', 400, 'GET', 'inst-a1', path => "/$HUB/installations/inst-a1", why => qr/api-version query parameter is missing/);
expect_inst('unknown api-version', 400, 'GET', 'inst-a1', path => "/$HUB/installations/inst-a1?api-version=2099-01", why => qr/'2099-01' is not supported/);
expect_inst('older api-version 2015-01 works', 200, 'GET', 'inst-a1', path => "/$HUB/installations/inst-a1?api-version=2015-01");
expect_inst('no x-ms-version', 400, 'GET', 'inst-a1', headers => { 'x-ms-version' => undef }, why => qr/x-ms-version/);
expect_inst('no Authorization', 401, 'GET', 'inst-a1', headers => { Authorization => undef }, why => qr/^MissingToken/);
expect_inst('bad signature', 401, 'PUT', 'inst-x', json => \%PUT_OK,
    headers => { Authorization => $nh->token(key => 'd3Jvbmcta2V5') }, why => qr/^InvalidSignature/);
expect_inst('expired token', 401, 'GET', 'inst-a1', headers => { Authorization => $nh->token(se => time - 5) }, why => qr/^ExpiredToken/);
expect_inst('token for another hub', 401, 'GET', 'inst-a1', headers => { Authorization => $nh->token(hub => 'acs-voip') }, why => qr/^InvalidAudience/);
expect_inst('token for another installation', 401, 'GET', 'inst-a1',
    headers => { Authorization => $nh->token(uri => "https://$HOST/$HUB/installations/inst-b1") }, why => qr/^InvalidAudience/);
expect_inst('token for the send path', 401, 'GET', 'inst-a1',
    headers => { Authorization => $nh->token(uri => "https://$HOST/$HUB/messages") }, why => qr/^InvalidAudience/);
expect_inst('Send-only rule on 2020-06', 403, 'PUT', 'inst-x', json => \%PUT_OK, empty => 1,
    headers => { Authorization => $nh->token(key_name => 'SendOnly') }, why => qr/lacks the Listen right/);
expect_inst('Send-only rule on 2015-01', 401, 'GET', 'inst-a1', path => "/$HUB/installations/inst-a1?api-version=2015-01",
    headers => { Authorization => $nh->token(key_name => 'SendOnly') }, why => qr/lacks the Listen claim/);
expect_inst('POST on an installation', 405, 'POST', 'inst-a1', why => qr/method POST not allowed/);
expect_inst('installation id with {', 400, 'GET', 'x', path => "/$HUB/installations/a%7Bb?api-version=2020-06", why => qr/Invalid installation id/);
expect_inst('installation of an unknown hub', 404, 'GET', 'x', path => "/nohub/installations/x?api-version=2020-06", why => qr/hub 'nohub' does not exist/);
expect_inst('GET of a missing installation', 404, 'GET', 'inst-none', why => qr/Installation Not Found/);

subtest 'DELETE answers 204, also for an installation that does not exist' => sub {
    is(inst_req('PUT', 'inst-d', json => { %PUT_OK, installationId => 'inst-d' })->{status}, 200, 'PUT');
    my $r = inst_req('DELETE', 'inst-d');
    is($r->{status}, 204, 'DELETE 204');
    is($r->{body}, '', 'no body');
    ok(last_entry()->{existed}, 'journal: existed');
    is(inst_req('GET', 'inst-d')->{status}, 404, 'then GET 404');
    is(inst_req('DELETE', 'inst-d')->{status}, 204, 'DELETE again 204');
    ok(!last_entry()->{existed}, 'journal: did not exist');
    is(inst_req('DELETE', 'inst-d', headers => { Authorization => $nh->token(key_name => 'SendOnly') })->{status},
       403, 'Send-only DELETE 403');
};

# ---------------------------------------------------------------- PATCH
sub patch_ok {
    my ($name, $id, $ops, $check) = @_;
    my $r = inst_req('PATCH', $id, json => $ops);
    subtest "PATCH $name -> 200" => sub {
        is($r->{status}, 200, 'status') or diag explain $r;
        is($r->{body}, '', 'no body');
        is(last_entry()->{op}, 'installation-patch', 'journal op');
        $check->($nh->installation($id));
    };
}
is(inst_req('PUT', 'inst-p', json => { installationId => 'inst-p', platform => 'apns', pushChannel => 'ef' x 32,
                                       tags => ['a'] })->{status}, 200, 'PUT inst-p');
patch_ok('add /tags (a string)', 'inst-p', [ { op => 'add', path => '/tags', value => 'b' } ],
    sub { is_deeply($_[0]{tags}, [ 'a', 'b' ], 'appended') });
patch_ok('add /tags (an array, duplicates ignored)', 'inst-p', [ { op => 'add', path => '/tags', value => [ 'b', 'c' ] } ],
    sub { is_deeply($_[0]{tags}, [ 'a', 'b', 'c' ], 'merged') });
patch_ok('add /tags/-', 'inst-p', [ { op => 'add', path => '/tags/-', value => 'd' } ],
    sub { is_deeply($_[0]{tags}, [ 'a', 'b', 'c', 'd' ], 'appended') });
patch_ok('remove /tags/TAG (by value)', 'inst-p', [ { op => 'remove', path => '/tags/b' } ],
    sub { is_deeply($_[0]{tags}, [ 'a', 'c', 'd' ], 'removed b') });
patch_ok('replace /tags', 'inst-p', [ { op => 'replace', path => '/tags', value => ['z'] } ],
    sub { is_deeply($_[0]{tags}, ['z'], 'replaced') });
patch_ok('remove the last tag removes tags', 'inst-p', [ { op => 'remove', path => '/tags/z' } ],
    sub { ok(!exists $_[0]{tags}, 'no tags property') });
patch_ok('add /userId, replace /pushChannel', 'inst-p',
    [ { op => 'add', path => '/userId', value => 'carol' }, { op => 'replace', path => '/pushChannel', value => '12' x 32 } ],
    sub { is($_[0]{userId}, 'carol', 'userId'); is($_[0]{pushChannel}, '12' x 32, 'pushChannel') });
patch_ok('add /templates/NAME', 'inst-p',
    [ { op => 'add', path => '/templates/t1', value => { body => '{"aps":{"alert":"$(m)"}}', tags => ['x'] } } ],
    sub { is($_[0]{templates}{t1}{body}, '{"aps":{"alert":"$(m)"}}', 'template'); is_deeply($_[0]{templates}{t1}{tags}, ['x'], 'template tags') });
patch_ok('add /templates/NAME/tags and replace /templates/NAME/body', 'inst-p',
    [ { op => 'add', path => '/templates/t1/tags', value => 'y' },
      { op => 'replace', path => '/templates/t1/body', value => '{"aps":{"alert":"$(n)"}}' } ],
    sub { is_deeply($_[0]{templates}{t1}{tags}, [ 'x', 'y' ], 'template tags merged');
          like($_[0]{templates}{t1}{body}, qr/\$\(n\)/, 'body replaced') });
patch_ok('remove /userId, remove /templates/NAME', 'inst-p',
    [ { op => 'remove', path => '/userId' }, { op => 'remove', path => '/templates/t1' } ],
    sub { ok(!exists $_[0]{userId}, 'no userId'); ok(!exists $_[0]{templates}, 'no templates') });
patch_ok('Content-Type application/json (as the JS SDK sends it)', 'inst-p',
    [ { op => 'add', path => '/tags', value => 'q' } ], sub { is_deeply($_[0]{tags}, ['q'], 'added') });
my @PATCH_BAD = (
    [ 'op move', [ { op => 'move', from => '/tags', path => '/x' } ], qr/op 'move' is not supported/ ],
    [ 'op test', [ { op => 'test', path => '/tags', value => ['q'] } ], qr/op 'test' is not supported/ ],
    [ 'path /platform', [ { op => 'replace', path => '/platform', value => 'wns' } ], qr/not a path Notification Hubs patches/ ],
    [ 'path /installationId', [ { op => 'replace', path => '/installationId', value => 'y' } ], qr/not a path/ ],
    [ 'remove /pushChannel', [ { op => 'remove', path => '/pushChannel' } ], qr/cannot be removed/ ],
    [ 'remove a tag that is not there', [ { op => 'remove', path => '/tags/nope' } ], qr/has no tag 'nope'/ ],
    [ 'replace /userId when there is none', [ { op => 'replace', path => '/userId', value => 'u' } ], qr/has no userId/ ],
    [ 'add without value', [ { op => 'add', path => '/tags' } ], qr/has no "value"/ ],
    [ 'path without /', [ { op => 'add', path => 'tags', value => 'x' } ], qr/no "path" starting with/ ],
    [ 'bad tag', [ { op => 'add', path => '/tags', value => 'a b' } ], qr/tag 'a b'/ ],
    [ 'over 60 tags', [ { op => 'add', path => '/tags', value => [ map { "t$_" } 1 .. 60 ] } ], qr/61 tags, at most 60/ ],
    [ 'bad pushChannel', [ { op => 'replace', path => '/pushChannel', value => 'zz' } ], qr/not a valid APNs token/ ],
    [ 'template part of a missing template', [ { op => 'add', path => '/templates/none/body', value => '{}' } ], qr/no template 'none'/ ],
    [ 'atomic: a valid op then an invalid one', [ { op => 'add', path => '/tags', value => 'never' },
                                                  { op => 'remove', path => '/pushChannel' } ], qr/operation 1/ ],
    [ 'not an array', { op => 'add', path => '/tags', value => 'x' }, qr/must be a JSON Patch array/ ],
);
for my $b (@PATCH_BAD) {
    my ($name, $ops, $why) = @$b;
    expect_inst("PATCH refused: $name", 400, 'PATCH', 'inst-p', json => $ops, why => $why);
}
is_deeply($nh->installation('inst-p')->{tags}, ['q'], 'no refused PATCH changed the installation');
expect_inst('PATCH with Content-Type text/plain', 415, 'PATCH', 'inst-p',
    json => [ { op => 'add', path => '/tags', value => 'x' } ], headers => { 'Content-Type' => 'text/plain' });
expect_inst('PATCH of a missing installation', 404, 'PATCH', 'inst-none',
    json => [ { op => 'add', path => '/tags', value => 'x' } ], why => qr/Installation Not Found/);
expect_inst('PATCH with a Send-only rule', 403, 'PATCH', 'inst-p', empty => 1,
    json => [ { op => 'add', path => '/tags', value => 'x' } ], headers => { Authorization => $nh->token(key_name => 'SendOnly') });

# ---------------------------------------------------------------- tag sends
my $T1_ALERT = '{"aps":{"alert":"$(msg)","badge":"#(count)"},"clip":"$(title, 5)","dots":".(title, 8)",'
             . '"url":"%(q)","cat":"{\'T: \' + $(title) + \\" !\\"}","missing":"$(nope)","lit":"plain","n":3}';
my $W1_TOAST = '<toast launch="{\'app?id=\' + %(q)}"><visual><binding template="ToastText01">'
             . '<text id="1">$(msg)</text><text id="2">fixed &amp; text</text></binding></visual></toast>';
sub seed_hub {
    $nh->clear_installations;
    $nh->add_installation({ installationId => 'a1', platform => 'apns', pushChannel => 'a1' x 32,
                            tags => [ 'sports', 'boston' ], userId => 'alice' });
    $nh->add_installation({ installationId => 'a2', platform => 'apns', pushChannel => 'a2' x 32, tags => ['news'] });
    $nh->add_installation({ installationId => 'f1', platform => 'fcmv1', pushChannel => 'fcm-f1',
                            tags => ['sports'], userId => 'alice' });
    $nh->add_installation({ installationId => 'b1', platform => 'browser', tags => ['sports'],
                            pushChannel => { endpoint => 'https://push.example/b1', p256dh => 'PK', auth => 'AU' } });
    $nh->add_installation({ installationId => 'w1', platform => 'wns', pushChannel => 'https://wns.example/w1',
                            tags => ['sports'],
                            templates => { toast => { body => $W1_TOAST, headers => { 'X-WNS-Type' => 'wns/toast' } } } });
    $nh->add_installation({ installationId => 't1', platform => 'apns', pushChannel => 'c1' x 32, tags => ['sports'],
                            templates => {
                                alert  => { body => $T1_ALERT, tags => ['tmpl-extra'], expiry => '$(exp)' },
                                silent => { body => '{"aps":{"content-available":1}}', tags => ['silent-only'] },
                            } });
    $nh->add_installation({ installationId => 'x1', platform => 'apns', pushChannel => 'd1' x 32, tags => ['big-one'],
                            templates => { big => { body => '{"aps":{"alert":"$(msg)"}}' } } });
}
seed_hub();

# a tag send on a fresh connection: tags => expression, format => ..., body => ...
sub tag_send {
    my (%o) = @_;
    my $fmt = $o{format} // 'apple';
    my %h = (
        'ServiceBusNotification-DeviceHandle' => undef,
        'ServiceBusNotification-Format'       => $fmt,
        'ServiceBusNotification-Tags'         => $o{tags},
        ($fmt eq 'apple' || $fmt eq 'template' ? () : ('apns-push-type' => undef, 'apns-priority' => undef)),
        %{ $o{headers} // {} },
    );
    return push_req(path => $o{path} // $nh->tag_send_path, headers => \%h,
                    body => $o{body} // ($fmt eq 'fcmv1' ? '{"message":{"data":{"k":"v"}}}' : '{"aps":{}}'));
}

# the deliveries of the last request, by "installation/template"
sub last_deliveries {
    my $e = last_entry();
    return map { (defined $_->{template} ? "$_->{installation_id}/$_->{template}" : $_->{installation_id}) => $_ }
           grep { $_->{tracking_id} eq $e->{tracking_id} } $nh->deliveries;
}

sub expect_reach {
    my ($name, $want, %o) = @_;
    my $r = tag_send(%o);
    my %d = last_deliveries();
    subtest "$name -> 201, reaches @{[ join(' ', @$want) || 'nobody' ]}" => sub {
        is($r->{status}, 201, 'status 201') or diag explain $r;
        my $hub = $o{hub} // $HUB;
        like($r->{headers}{location} // '', qr{^https://$HOST/$hub/messages/\d+\?api-version=2020-06$}, 'Location');
        is_deeply([ sort keys %d ], [ sort @$want ], 'deliveries');
        my $e = last_entry();
        is($e->{op}, 'tag-send', 'journal op');
        is($e->{tags}, $o{tags}, 'journal tag expression');
        is($e->{deliveries}, scalar @$want, 'journal delivery count');
    };
    return \%d;
}

subtest 'native tag send: the journal tells requests from deliveries' => sub {
    $nh->clear;
    my $r = tag_send(tags => 'sports', headers => { 'apns-push-type' => 'alert', 'apns-priority' => '10' },
                     body => '{"aps":{"alert":"goal"}}');
    is($r->{status}, 201, 'status 201') or diag explain $r;
    my @all = $nh->entries;
    is(scalar @all, 3, 'three journal lines: the request and two deliveries');
    is(scalar $nh->requests, 1, 'requests(): one');
    my @d = $nh->deliveries;
    is(scalar @d, 2, 'deliveries(): two');
    is($all[0]{kind}, 'request', 'the request comes first');
    is_deeply([ map { $_->{installation_id} } @d ], [ 'a1', 't1' ], 'apns installations tagged sports');
    my $e = $all[0];
    for my $d (@d) {
        is($d->{kind}, 'delivery', 'kind delivery');
        is($d->{tracking_id}, $e->{tracking_id}, 'tracking id of the request');
        is($d->{notification_id}, $e->{notification_id}, 'notification id of the request');
        is($d->{platform}, 'apns', 'platform');
        is($d->{format}, 'apple', 'format');
        is($d->{hub}, $HUB, 'hub');
        is($d->{payload}, '{"aps":{"alert":"goal"}}', 'payload as sent');
        is_deeply($d->{json}, { aps => { alert => 'goal' } }, 'json');
        is($d->{headers}{'apns-push-type'}, 'alert', 'apns-push-type passed on');
        is($d->{headers}{'apns-priority'}, '10', 'apns-priority passed on');
        ok(!defined $d->{template}, 'no template');
    }
    is($d[0]{push_channel}, 'a1' x 32, 'push channel');
    is($d[0]{user_id}, 'alice', 'user id');
    is($nh->wait_requests(1, 1), 1, 'wait_requests counts requests only');
    is($nh->wait_deliveries(2, 1), 2, 'wait_deliveries');
};
expect_reach('fcmv1 send reaches fcmv1 installations only', ['f1'], format => 'fcmv1', tags => 'sports');
expect_reach('$UserId:{alice} (apple)', ['a1'], tags => '$UserId:{alice}');
expect_reach('$InstallationId:{a2}', ['a2'], tags => '$InstallationId:{a2}');
expect_reach('expression with && ! ( ) ||', ['a2', 't1'], tags => '(sports && !boston) || news');
expect_reach('an expression that matches nobody is still 201', [], tags => 'nobody-has-this');
expect_reach('a tag of another hub does not match', [], tags => 'sports', hub => 'acs-voip', path => $nh->tag_send_path('acs-voip'),
    headers => { Authorization => $nh->token(hub => 'acs-voip') });
expect_reach('20 tags with || only', ['a2'], tags => join(' || ', 'news', map { "t$_" } 1 .. 19));
expect_reach('6 tags with &&', [], tags => join(' && ', map { "t$_" } 1 .. 6));
my $bd = expect_reach('browser send: keys from the installation', ['b1'], format => 'browser', tags => 'sports',
    body => '{"title":"x"}');
is($bd->{b1}{headers}{auth}, 'AU', 'Auth from pushChannel.auth');
is($bd->{b1}{headers}{p256dh}, 'PK', 'P256DH from pushChannel.p256dh');
is_deeply($bd->{b1}{push_channel}, { endpoint => 'https://push.example/b1', p256dh => 'PK', auth => 'AU' }, 'push channel object');

# template sends
my $props = '{"MSG":"Hi <you> & co","count":"7","title":"Breaking news today","q":"a b&c","exp":"2030-01-01T00:00:00Z"}';
my $td = expect_reach('template send: every matching template of every platform',
    [ 't1/alert', 't1/silent', 'w1/toast' ], format => 'template', tags => 'sports', body => $props);
subtest 'template expansion: $( ) $(p, n) .(p, n) %( ) #( ) {a + b}, names not case-sensitive' => sub {
    my $a = $td->{'t1/alert'};
    is($a->{format}, 'template', 'format template');
    is($a->{platform}, 'apns', 'platform');
    is($a->{template}, 'alert', 'template name');
    is_deeply($a->{json}, {
        aps => { alert => 'Hi <you> & co', badge => 7 }, clip => 'Break', dots => 'Break...',
        url => 'a%20b%26c', cat => 'T: Breaking news today !', missing => '', lit => 'plain', n => 3,
    }, 'expanded payload') or diag $a->{payload};
    like($a->{payload}, qr/"badge":7[,}]/, '#(count) became a number');
    is($a->{expiry}, '2030-01-01T00:00:00Z', 'expiry expanded');
    is($a->{headers}{'content-type'}, 'application/json', 'content-type');
    my $w = $td->{'w1/toast'};
    is($w->{payload}, '<toast launch="app?id=a%20b%26c"><visual><binding template="ToastText01">'
                    . '<text id="1">Hi &lt;you&gt; &amp; co</text><text id="2">fixed &amp; text</text>'
                    . '</binding></visual></toast>', 'XML template: text and attribute expanded, escaped');
    is($w->{headers}{'x-wns-type'}, 'wns/toast', 'template header');
    is($w->{headers}{'content-type'}, 'application/xml', 'content-type');
    is($w->{push_channel}, 'https://wns.example/w1', 'push channel');
};
expect_reach('template send: a template tag selects that template', ['t1/silent'], format => 'template',
    tags => 'silent-only', body => $props);
expect_reach('template send: the template name is a tag', ['t1/alert'], format => 'template',
    tags => 'alert && $InstallationId:{t1}', body => $props);
expect_reach('template send: installations without templates are not reached', [], format => 'template',
    tags => '$InstallationId:{a1}', body => $props);
my $big = expect_reach('template send: an expanded payload over the platform limit is dropped, not refused',
    ['x1/big'], format => 'template', tags => '$InstallationId:{x1}', body => '{"msg":"' . ('m' x 5000) . '"}');
like($big->{'x1/big'}{dropped} // '', qr/exceeds 4096 bytes/, 'delivery marked dropped');

# refusals of tag sends
sub expect_send {
    my ($name, $st, %o) = @_;
    my $why = delete $o{why};
    my $r = tag_send(%o);
    subtest "$name -> $st" => sub {
        is($r->{status}, $st, 'status') or diag explain $r;
        if (!$o{empty}) {
            like($r->{body}, qr{^<Error><Code>$st</Code><Detail>.+</Detail></Error>$}s, 'NH error body');
        } else {
            is($r->{body}, '', 'empty body');
        }
        my $e = last_entry();
        is($e->{status}, $st, 'journaled status');
        like($e->{detail}, $why, 'journaled reason') if $why;
        is(scalar(grep { $_->{tracking_id} eq $e->{tracking_id} } $nh->deliveries), 0, 'no deliveries');
    };
}
my @EXPR_BAD = (
    [ 'a &&', qr/expression ends where a tag was expected/ ],
    [ '(a || b', qr/missing \)/ ],
    [ 'a || b)', qr/unexpected '\)'/ ],
    [ 'a & b', qr/unexpected '& b'/ ],
    [ 'a b', qr/unexpected 'tag' 'b'/ ],
    [ '&& a', qr/'&&' where a tag was expected/ ],
    [ '$foo', qr/unexpected '\$foo'/ ],
    [ '$InstallationId:a1', qr/unexpected '\$Installatio/ ],
    [ 'a,b', qr/unexpected ',b'/ ],
    [ 'x' x 121, qr/longer than 120/ ],
    [ join(' || ', map { "t$_" } 1 .. 21), qr/21 tags; an expression is limited to 20/ ],
    [ join(' && ', map { "t$_" } 1 .. 7), qr/7 tags; .* else to 6/ ],
    [ '!t1 || ' . join(' || ', map { "t$_" } 2 .. 7), qr/7 tags/ ],
    [ ' ', qr/empty expression/ ],
);
for my $b (@EXPR_BAD) {
    my ($x, $why) = @$b;
    expect_send("malformed expression '" . (length $x > 30 ? substr($x, 0, 27) . '...' : $x) . "'", 400,
        tags => $x, why => $why);
}
expect_send('tag send with a DeviceHandle', 400, tags => 'sports',
    headers => { 'ServiceBusNotification-DeviceHandle' => 'ab' x 32 }, why => qr/only for direct sends/);
expect_send('tag send by a Listen-only rule', 403, tags => 'sports', empty => 1,
    headers => { Authorization => $nh->token(key_name => 'ListenOnly') }, why => qr/lacks the Send right/);
expect_send('tag send without x-ms-version', 400, tags => 'sports', headers => { 'x-ms-version' => undef });
expect_send('apple tag send without aps', 400, tags => 'sports', body => '{"data":{}}', why => qr/no "aps" object/);
expect_send('fcmv1 tag send with a token', 400, tags => 'sports', format => 'fcmv1',
    body => '{"message":{"token":"t"}}', why => qr/message.token must not be set for a tag send/);
expect_send('template send: a property that is not a string', 400, tags => 'sports', format => 'template',
    body => '{"count":7}', why => qr/property 'count' must be a string/);
expect_send('template send: a JSON array body', 400, tags => 'sports', format => 'template',
    body => '["a"]', why => qr/JSON object of string properties/);
expect_send('template send: property names equal but for case', 400, tags => 'sports', format => 'template',
    body => '{"msg":"a","MSG":"b"}', why => qr/given twice/);
expect_send('template send: Content-Type text/plain', 415, tags => 'sports', format => 'template',
    body => '{}', headers => { 'Content-Type' => 'text/plain' });
expect_send('template format on a direct send', 400, tags => undef, format => 'template', path => $nh->send_path,
    headers => { 'ServiceBusNotification-DeviceHandle' => 'ab' x 32 }, why => qr/'template' is not a valid platform/);

# ---------------------------------------------------------------- injection for installations and tag sends
subtest 'rules.json: installation prefix, 503 then 200; a failed PUT stores nothing' => sub {
    $nh->reset_counters;
    $nh->set_rules([ { installation => 'flaky-', method => 'PUT', status => 503, times => 1, retry_after => 2 } ]);
    my %i = (installationId => 'flaky-1', platform => 'apns', pushChannel => 'ab' x 32);
    my $r = inst_req('PUT', 'flaky-1', json => \%i);
    is($r->{status}, 503, 'first PUT 503');
    is($r->{headers}{'retry-after'}, '2', 'Retry-After: 2');
    like($r->{body}, qr{^<Error><Code>503</Code>}, 'NH error body');
    is(last_entry()->{injected}, 'rules.json[0]:installation flaky-', 'journal: injected');
    is(inst_req('GET', 'flaky-1')->{status}, 404, 'not stored (GET is not matched by the rule)');
    is(inst_req('PUT', 'flaky-1', json => \%i)->{status}, 200, 'second PUT 200');
    is(inst_req('GET', 'flaky-1')->{status}, 200, 'stored');
    $nh->set_rules();
};
subtest 'rules.json: 429 with Retry-After for a tag expression; no deliveries' => sub {
    $nh->set_rules([ { tags => 'sports', status => 429, retry_after => 3 } ]);
    my $r = tag_send(tags => 'sports && boston');
    is($r->{status}, 429, 'status 429');
    is($r->{headers}{'retry-after'}, '3', 'Retry-After');
    is(scalar(grep { $_->{tracking_id} eq last_entry()->{tracking_id} } $nh->deliveries), 0, 'no deliveries');
    is(tag_send(tags => 'news')->{status}, 201, 'another expression is not matched');
    $nh->set_rules();
};
subtest 'rules.json: a 201 rule on a tag send delays, then fans out' => sub {
    $nh->set_rules([ { tags => '$InstallationId:{a2}', status => 201, delay_ms => 300 } ]);
    my $t = Time::HiRes::time();
    my $r = tag_send(tags => '$InstallationId:{a2}');
    is($r->{status}, 201, 'status 201');
    cmp_ok(Time::HiRes::time() - $t, '>=', 0.3, 'delayed');
    my %d = last_deliveries();
    is_deeply([ keys %d ], ['a2'], 'delivered');
    $nh->set_rules();
};
subtest 'rules.json: path prefix with hang (2 s client timeout), DELETE 500 by method' => sub {
    $nh->set_rules([ { path => "/$HUB/installations/hang-", status => 'hang' },
                     { installation => 'gone-', method => 'DELETE', status => 500 } ]);
    my $t = Time::HiRes::time();
    my $s = nh_connect() or return fail('connect');
    my $r = nh_request($s, method => 'GET', path => $nh->installation_path('hang-1'), timeout => 2, body => '',
                       headers => { 'ServiceBusNotification-Format' => undef, 'ServiceBusNotification-DeviceHandle' => undef });
    close $s;
    is($r->{error}, 'timeout', 'no answer') or diag explain $r;
    is(last_entry()->{status}, 0, 'journaled with status 0');
    is(inst_req('DELETE', 'gone-1')->{status}, 500, 'DELETE 500');
    is(inst_req('GET', 'gone-1')->{status}, 404, 'GET not matched');
    $nh->set_rules();
};
subtest 'rules.json without any selector: 500 naming the error' => sub {
    $nh->set_rules([ { status => 503 } ]);
    my $r = inst_req('GET', 'a1');
    is($r->{status}, 500, 'status 500');
    like(last_entry()->{detail}, qr/needs a non-empty "prefix", "installation", "tags" or "path"/, 'reason');
    $nh->set_rules();
};

# ---------------------------------------------------------------- control API and concurrency
subtest 'control API: add_installation validates, clear_installations empties' => sub {
    ok(!eval { $nh->add_installation({ installationId => 'bad', platform => 'mpns', pushChannel => 'x' }); 1 },
       'add_installation croaks on an invalid installation');
    like($@, qr/platform 'mpns'/, 'with the reason');
    ok(!defined $nh->installation('no-such'), 'installation() of a missing id is undef');
    ok(scalar($nh->installations) > 0, 'some installations');
    $nh->clear_installations;
    is(scalar($nh->installations), 0, 'none after clear_installations');
};
subtest '16 concurrent PUTs from 16 connections all persist' => sub {
    my @pids;
    for my $n (1 .. 16) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $r = inst_req('PUT', "par-$n", json => { installationId => "par-$n", platform => 'fcmv1',
                                                         pushChannel => "tok-$n", tags => ["n$n"] });
            POSIX::_exit(($r->{status} // 0) == 200 ? 0 : 1);
        }
        push @pids, $pid;
    }
    my $fails = 0;
    for (@pids) { waitpid($_, 0); $fails++ if $? }
    is($fails, 0, 'sixteen 200s');
    is(scalar($nh->installations), 16, 'sixteen installations stored');
    my %d = %{ expect_reach('and a send reaches them by tag', [ map { "par-$_" } 1 .. 16 ], format => 'fcmv1',
                            tags => join(' || ', map { "n$_" } 1 .. 16)) };
};

# ---------------------------------------------------------------- stop
my $pid = $nh->pid;
$nh->stop;
ok(!kill(0, -$pid), 'process group gone after stop');
cmp_ok(Time::HiRes::time() - $T0, '<', 40, 'took less than 40 s');

done_testing;
