#!/usr/bin/perl
# Unit test for t/lib/AcsTest/Entra.pm (no nginx needed).
#   prove -I t/lib t/001-entra-tokens.t

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use AcsTest::Util qw(slurp spew);
use File::Temp qw(tempdir);
use File::Spec;
use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use Digest::SHA qw(hmac_sha256);

use AcsTest::Entra;

my $E = 'AcsTest::Entra';
my $TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
my $TMP = tempdir('entra-unit-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub json_file { JSON::PP->new->decode(slurp($_[0])) }

# openssl dgst -verify; returns true if the signature verifies.
sub ossl_verify {
    my ($pub, $digest, $data, $sig, @sigopt) = @_;
    my ($d, $s) = ("$TMP/v.data", "$TMP/v.sig");
    spew($d, $data);
    spew($s, $sig);
    my @cmd = ('openssl', 'dgst', "-$digest", '-verify', $pub,
               (map { ('-sigopt', $_) } @sigopt), '-signature', $s, $d);
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open(STDOUT, '>', File::Spec->devnull);
        open(STDERR, '>', File::Spec->devnull);
        exec @cmd or exit 127;
    }
    waitpid($pid, 0);
    return $? == 0;
}

sub parts { my ($h, $p, $s) = split /\./, $_[0], -1; ("$h.$p", $s) }

# ---------------------------------------------------------------- b64url
subtest 'b64url' => sub {
    for my $len (0 .. 7) {
        my $b = join '', map { chr(($_ * 77 + 251) & 0xff) } 1 .. $len;
        my $s = $E->can('b64url')->($b);
        unlike($s, qr/[=+\/]/, "len $len: url-safe alphabet, no padding");
        is($E->can('b64url_decode')->($s), $b, "len $len: round trip");
    }
    is(AcsTest::Entra::b64url("\xfb\xff\xbf"), '-_-_', '+/ mapped to -_');
    is(AcsTest::Entra::b64url_decode('-_-_'), "\xfb\xff\xbf", 'decode -_');
};

# ---------------------------------------------------------------- setup
my $dir = "$TMP/keys";
my $k = AcsTest::Entra::setup($dir);

subtest 'setup files' => sub {
    for my $f (qw(key1 key1_pub key2 key2_pub ec ec_pub jwks jwks_key1only
                  jwks_empty jwks_ec hs256_secret)) {
        ok(-s $k->{$f}, "$f exists ($k->{$f})");
    }
    like(slurp($k->{key1}), qr/BEGIN PRIVATE KEY/, 'key1.pem is a private key');
    like(slurp($k->{key1_pub}), qr/BEGIN PUBLIC KEY/, 'key1.pub.pem is public');
    is(slurp($k->{hs256_secret}), slurp($k->{key1_pub}),
       'hs256-secret.pem = key1.pub.pem text');
    isnt(slurp($k->{key1_pub}), slurp($k->{key2_pub}), 'two distinct RSA keys');

    my $before = slurp($k->{jwks});
    my $k2 = AcsTest::Entra::setup($dir);
    is_deeply($k2, $k, 'second setup returns same paths');
    is(slurp($k->{jwks}), $before, 'second setup did not regenerate');
};

subtest 'concurrent setup' => sub {
    my $pdir = "$TMP/parallel";
    my @pids;
    for (1 .. 3) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $ok = eval { AcsTest::Entra::setup($pdir); 1 };
            exit($ok ? 0 : 1);
        }
        push @pids, $pid;
    }
    for (@pids) { waitpid($_, 0); is($?, 0, "child $_ setup ok") }
    my $p = AcsTest::Entra::setup($pdir);
    my $j = json_file($p->{jwks});
    is(scalar @{ $j->{keys} }, 2, 'jwks has 2 keys');
    my ($n) = AcsTest::Entra::rsa_public_numbers($p->{key1_pub});
    is($j->{keys}[0]{n}, AcsTest::Entra::b64url($n),
       'jwks matches key1.pub.pem after concurrent setup');
    my @left = glob("$pdir/.entra-tmp-*");
    is(scalar @left, 0, 'no temp dirs left behind');
    AcsTest::Entra::setup($dir);    # restore default dir for token()
};

# ---------------------------------------------------------------- JWKS
subtest 'jwks content' => sub {
    my $j = json_file($k->{jwks});
    is_deeply([map { $_->{kid} } @{ $j->{keys} }], ['test-kid-1', 'test-kid-2'],
              'kids');
    for my $i (0, 1) {
        my $jwk = $j->{keys}[$i];
        my $pub = $i ? $k->{key2_pub} : $k->{key1_pub};
        is($jwk->{kty}, 'RSA', "key $i kty");
        is($jwk->{use}, 'sig', "key $i use");
        is($jwk->{x5t}, $jwk->{kid}, "key $i x5t");
        is($jwk->{e}, 'AQAB', "key $i e = 65537");
        unlike($jwk->{n}, qr/[=+\/]/, "key $i n is base64url without padding");

        my $nbytes = AcsTest::Entra::b64url_decode($jwk->{n});
        is(length $nbytes, 256, "key $i n is 256 bytes (no leading zero)");
        isnt(substr($nbytes, 0, 1), "\x00", "key $i n has no leading zero byte");

        my $out = `openssl rsa -pubin -in '$pub' -modulus -noout 2>/dev/null`;
        my ($hex) = $out =~ /Modulus=([0-9A-F]+)/;
        is(uc unpack('H*', $nbytes), $hex, "key $i n = openssl modulus");

        # Rebuild SubjectPublicKeyInfo DER from n/e, compare with openssl's.
        my $spki = spki_rsa($nbytes, AcsTest::Entra::b64url_decode($jwk->{e}));
        my $der = `openssl pkey -pubin -in '$pub' -outform DER 2>/dev/null`;
        ok($spki eq $der, "key $i n/e rebuild the same public key DER");
    }

    my $one = json_file($k->{jwks_key1only});
    is(scalar @{ $one->{keys} }, 1, 'key1only: 1 key');
    is_deeply($one->{keys}[0], $j->{keys}[0], 'key1only = key1 entry');
    is_deeply(json_file($k->{jwks_empty}), { keys => [] }, 'empty jwks');

    my $ec = json_file($k->{jwks_ec})->{keys}[0];
    is($ec->{kty}, 'EC', 'ec kty');
    is($ec->{crv}, 'P-256', 'ec crv');
    is($ec->{kid}, 'test-kid-ec', 'ec kid');
    my ($x, $y) = map { AcsTest::Entra::b64url_decode($ec->{$_}) } qw(x y);
    is(length($x) . '/' . length($y), '32/32', 'ec x/y are 32 bytes');
    my $der = `openssl pkey -pubin -in '$k->{ec_pub}' -outform DER 2>/dev/null`;
    ok(substr($der, -65) eq "\x04$x$y", 'ec x/y match the public point');
};

sub der_len {
    my $l = shift;
    return chr($l) if $l < 0x80;
    my $b = '';
    while ($l) { $b = chr($l & 0xff) . $b; $l >>= 8 }
    return chr(0x80 | length $b) . $b;
}
sub der { my ($tag, $body) = @_; chr($tag) . der_len(length $body) . $body }
sub der_uint { my $v = shift; $v = "\x00$v" if ord($v) & 0x80; der(0x02, $v) }
sub spki_rsa {
    my ($n, $e) = @_;
    my $alg = der(0x30, der(0x06, "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01")
                        . "\x05\x00");
    my $rsakey = der(0x30, der_uint($n) . der_uint($e));
    return der(0x30, $alg . der(0x03, "\x00" . $rsakey));
}

# ---------------------------------------------------------------- tokens
subtest 'default v1 token' => sub {
    my $before = time;
    my $t = AcsTest::Entra::token();
    my @seg = split /\./, $t, -1;
    is(scalar @seg, 3, 'three segments');
    unlike($t, qr/[=+\/\s]/, 'no padding or non-url characters');

    my ($h, $c, $sig) = AcsTest::Entra::decode($t);
    is_deeply($h, { typ => 'JWT', alg => 'RS256', kid => 'test-kid-1',
                    x5t => 'test-kid-1' }, 'header');
    is($c->{aud}, 'api://acs-notify-test', 'aud');
    is($c->{iss}, "https://sts.windows.net/$TENANT/", 'iss (v1)');
    is($c->{tid}, $TENANT, 'tid');
    is($c->{appid}, '4962773b-9cdb-44cf-a8bf-237846a00ab7', 'appid');
    is($c->{appidacr}, '2', 'appidacr');
    is($c->{ver}, '1.0', 'ver');
    ok(!exists $c->{azp}, 'no azp in v1');
    ok(defined $c->{$_}, "$_ present") for qw(idp oid sub);
    ok($c->{iat} <= $before - 60 + 1 && $c->{iat} >= $before - 61, 'iat = now-60');
    is($c->{nbf}, $c->{iat}, 'nbf = iat');
    ok($c->{exp} >= $before + 3599 && $c->{exp} <= time + 3600, 'exp = now+3600');
    is(length $sig, 256, 'RS256 signature is 256 bytes');

    my ($input) = parts($t);
    ok(ossl_verify($k->{key1_pub}, 'sha256', $input, $sig),
       'signature verifies with key1.pub.pem');
    ok(!ossl_verify($k->{key2_pub}, 'sha256', $input, $sig),
       'signature does not verify with key2.pub.pem');
};

subtest 'v2 token' => sub {
    my (undef, $c) = AcsTest::Entra::decode(AcsTest::Entra::token(version => '2.0'));
    is($c->{iss}, "https://login.microsoftonline.com/$TENANT/v2.0", 'iss (v2)');
    is($c->{azp}, '4962773b-9cdb-44cf-a8bf-237846a00ab7', 'azp');
    is($c->{azpacr}, '2', 'azpacr');
    is($c->{ver}, '2.0', 'ver');
    ok(!exists $c->{appid} && !exists $c->{appidacr}, 'no appid/appidacr');
    is($c->{tid}, $TENANT, 'tid');
};

subtest 'key2 / kid' => sub {
    my $t = AcsTest::Entra::token(key => 'key2');
    my ($h, undef, $sig) = AcsTest::Entra::decode($t);
    is($h->{kid}, 'test-kid-2', 'kid follows key');
    ok(ossl_verify($k->{key2_pub}, 'sha256', (parts($t))[0], $sig),
       'verifies with key2');

    $t = AcsTest::Entra::token(kid => 'test-kid-2');
    ($h, undef, $sig) = AcsTest::Entra::decode($t);
    is($h->{kid}, 'test-kid-2', 'explicit kid');
    ok(ossl_verify($k->{key1_pub}, 'sha256', (parts($t))[0], $sig),
       'explicit kid does not change the signing key (key1)');

    ($h) = AcsTest::Entra::decode(AcsTest::Entra::token(kid => undef));
    ok(!exists $h->{kid} && !exists $h->{x5t}, 'kid => undef drops kid/x5t');

    ($h) = AcsTest::Entra::decode(AcsTest::Entra::token(dir => $dir,
        header => { typ => undef, x5t => 'other', extra => 1 }));
    is_deeply($h, { alg => 'RS256', kid => 'test-kid-1', x5t => 'other',
                    extra => 1 }, 'header merge/delete');
};

subtest 'claims merge' => sub {
    my (undef, $c) = AcsTest::Entra::decode(AcsTest::Entra::token(
        claims => { aud => 'api://other', exp => undef,
                    roles => ['AzureEventGridSecureWebhookSubscriber'] }));
    is($c->{aud}, 'api://other', 'override');
    ok(!exists $c->{exp}, 'undef deletes');
    is_deeply($c->{roles}, ['AzureEventGridSecureWebhookSubscriber'], 'added');
    is($c->{ver}, '1.0', 'others kept');

    (undef, $c) = AcsTest::Entra::decode(AcsTest::Entra::token(now => 1000));
    is_deeply([@$c{qw(iat nbf exp)}], [940, 940, 4600], 'now option');
};

subtest 'tamper' => sub {
    my $t = AcsTest::Entra::token(tamper => 'signature');
    my ($input, $s) = parts($t);
    my $sig = AcsTest::Entra::b64url_decode($s);
    is(length $sig, 256, 'tampered signature still 256 bytes');
    ok(!ossl_verify($k->{key1_pub}, 'sha256', $input, $sig),
       'tampered signature does not verify');

    $t = AcsTest::Entra::token(tamper => 'payload');
    ($input, $s) = parts($t);
    my (undef, $c) = AcsTest::Entra::decode($t);
    is(ref $c, 'HASH', 'tampered payload is still JSON');
    ok(!ossl_verify($k->{key1_pub}, 'sha256', $input,
                    AcsTest::Entra::b64url_decode($s)),
       'tampered payload does not verify');
};

subtest 'alg none' => sub {
    my $t = AcsTest::Entra::token(alg => 'none');
    like($t, qr/^[\w-]+\.[\w-]+\.$/, 'header.payload. (empty signature)');
    my ($h) = AcsTest::Entra::decode($t);
    is($h->{alg}, 'none', 'alg none in header');
};

subtest 'HS256' => sub {
    my $t = AcsTest::Entra::token(alg => 'HS256');
    my ($input, $s) = parts($t);
    my ($h) = AcsTest::Entra::decode($t);
    is($h->{alg}, 'HS256', 'header alg');
    is($s, AcsTest::Entra::b64url(hmac_sha256($input, slurp($k->{key1_pub}))),
       'HMAC with key1.pub.pem text as secret');
    $t = AcsTest::Entra::token(alg => 'HS256', hmac_secret => 'k');
    ($input, $s) = parts($t);
    is($s, AcsTest::Entra::b64url(hmac_sha256($input, 'k')), 'hmac_secret');
};

subtest 'ES256' => sub {
    my $t = AcsTest::Entra::token(alg => 'ES256');
    my ($h, undef, $sig) = AcsTest::Entra::decode($t);
    is($h->{alg}, 'ES256', 'header alg');
    is($h->{kid}, 'test-kid-ec', 'kid');
    is(length $sig, 64, 'raw R||S is 64 bytes');
    my ($input) = parts($t);
    ok(ossl_verify($k->{ec_pub}, 'sha256', $input,
                   AcsTest::Entra::ecdsa_raw_to_der($sig)),
       'verifies with ec.pub.pem (after raw -> DER)');
    my $raw = AcsTest::Entra::ecdsa_der_to_raw(
        AcsTest::Entra::ecdsa_raw_to_der("\x00" x 31 . "\x01" . "\xff" x 32));
    is(unpack('H*', $raw), '00' x 31 . '01' . 'ff' x 32, 'der/raw round trip');
};

subtest 'other RSA algs' => sub {
    for my $a ([RS384 => 'sha384'], [RS512 => 'sha512']) {
        my $t = AcsTest::Entra::token(alg => $a->[0]);
        my (undef, undef, $sig) = AcsTest::Entra::decode($t);
        ok(ossl_verify($k->{key1_pub}, $a->[1], (parts($t))[0], $sig),
           "$a->[0] verifies");
    }
    my $t = AcsTest::Entra::token(alg => 'PS256');
    my (undef, undef, $sig) = AcsTest::Entra::decode($t);
    ok(ossl_verify($k->{key1_pub}, 'sha256', (parts($t))[0], $sig,
                   'rsa_padding_mode:pss', 'rsa_pss_saltlen:32'), 'PS256 verifies');
};

subtest 'raw header/payload' => sub {
    my $t = AcsTest::Entra::token(raw_header => '{"alg":"RS256",',
                                  raw_payload => 'not json');
    my ($h, $p) = split /\./, $t;
    is(AcsTest::Entra::b64url_decode($h), '{"alg":"RS256",', 'raw header verbatim');
    is(AcsTest::Entra::b64url_decode($p), 'not json', 'raw payload verbatim');
    my (undef, undef, $sig) = AcsTest::Entra::decode($t);
    ok(ossl_verify($k->{key1_pub}, 'sha256', (parts($t))[0], $sig),
       'still signed');
    like(AcsTest::Entra::token(raw_payload => '[]', tamper => 'payload'),
         qr/^[\w-]+\.[\w-]+\.[\w-]+$/, 'payload tamper works on raw payload');
};

subtest 'errors' => sub {
    ok(!eval { AcsTest::Entra::token(alg => 'XX999'); 1 }, 'unknown alg croaks');
    ok(!eval { AcsTest::Entra::token(version => '3.0'); 1 }, 'bad version croaks');
    ok(!eval { AcsTest::Entra::token(alg => 'none', tamper => 'signature'); 1 },
       'cannot tamper an empty signature');
};

done_testing();
